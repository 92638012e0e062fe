//! The project's own services, started for a check: on a free loopback port, with their log
//! in a file, stopped when the check ends.

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// Cargo's target directory: `CARGO_TARGET_DIR`, or `target/` under the workspace root.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// `cargo` arguments that build the debug binaries of both services and the bench's forwarder:
/// the test suite's own build, which makes them all. After the suite it builds nothing; a
/// `cargo build` would build the crate and many of its dependencies again, since cargo resolves
/// their features anew for each selection of targets.
pub const BUILD_SERVICES: [&str; 3] = ["test", "--workspace", "--no-run"];

/// A free loopback port, found by binding port 0. The service binds it a moment later.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

/// Polls `path` until it answers 200, for up to 30 s.
pub fn wait_until_up(port: u16, path: &str) -> Result<(), String> {
    poll_until_up(port, path, Duration::from_millis(100))
}

/// Polls `path` every `interval` until it answers 200, for up to 30 s.
pub fn poll_until_up(port: u16, path: &str, interval: Duration) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if request(port, "GET", path, None).is_ok_and(|(status, _)| status == 200) {
            return Ok(());
        }
        thread::sleep(interval);
    }
    Err(format!(
        "nothing answered 200 on 127.0.0.1:{port}{path} within 30 s"
    ))
}

/// One HTTP/1.1 request on its own connection, with an optional JSON body: its status and
/// body. For setting up and probing a service, not for load.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = json.unwrap_or_default();
    let content_type = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let not_http = || std::io::Error::other("not an HTTP answer");
    // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
    let status = answer
        .get(9..12)
        .and_then(|status| status.parse().ok())
        .ok_or_else(not_http)?;
    let (_, body) = answer.split_once("\r\n\r\n").ok_or_else(not_http)?;
    Ok((status, body.to_owned()))
}

/// A service started for a check; stopped when dropped. Its log goes to `<work>/<name>.log`,
/// as JSON unless `env` sets `LOG_FORMAT`.
pub struct Service(Child);

impl Service {
    pub fn start(
        name: &str,
        binary: &Path,
        env: &[(&str, &str)],
        work: &Path,
    ) -> Result<Self, String> {
        let log_path = work.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;
        let err_log = log.try_clone().map_err(|err| err.to_string())?;
        let child = Command::new(binary)
            .current_dir(work)
            // The services keep their data under `work`, never in a database the environment
            // happens to name.
            .env_remove("DATABASE_URL")
            // Reached over the loopback only: nothing else on the machine needs them.
            .env("SERVER_HOST", "127.0.0.1")
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", binary.display()))?;
        println!("==> started {name} (log: {})", log_path.display());
        Ok(Self(child))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
