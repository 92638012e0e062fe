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

/// A free loopback port, found by binding port 0. The service binds it a moment later.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

/// Polls `path` until it answers 200, for up to 30 s.
pub fn wait_until_up(port: u16, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get_status(port, path).is_ok_and(|status| status == 200) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "nothing answered 200 on 127.0.0.1:{port}{path} within 30 s"
    ))
}

fn get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0; 12];
    stream.read_exact(&mut head)?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// A service started for the provider checks; stopped when dropped. Its log goes to
/// `<work>/<name>.log`.
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
            .envs(env.iter().copied())
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", binary.display()))?;
        println!("==> started {name} (log: {})", log_path.display());
        Ok(Self(child))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
