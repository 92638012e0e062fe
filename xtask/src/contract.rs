//! `cargo xtask contract`: checks both contracts from every side.
//!
//! - the SDK's copy of the spec: the SDK crate is packaged on its own, so it carries a copy of
//!   `openapi/order-processor.yaml`; without `--check` the copy is refreshed, with it a stale
//!   copy fails;
//! - spec drift: the document each generated server serves equals its committed spec;
//! - consumer: the SDK against a live Order Processor, over every operation and every
//!   documented error status it can provoke;
//! - provider: schemathesis generates requests from each committed spec and runs all its
//!   checks against the running services (`xtask/schemathesis.toml` says where an expected
//!   status is widened, and why);
//! - breaking changes against the last release.

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{breaking, python, step};

const SPEC: &str = "openapi/order-processor.yaml";
const SDK_SPEC: &str = "sdk/openapi/order-processor.yaml";

/// Examples per operation and the seed: enough to reach every documented status, fixed so
/// that a failure reproduces.
const MAX_EXAMPLES: &str = "100";
const SEED: &str = "20261124";

pub fn run(root: &Path, check: bool) -> Result<(), String> {
    sdk_spec(root, check)?;
    step::cargo(
        root,
        "spec drift: each served document equals its committed spec",
        &["test", "--test", "contracts"],
    )?;
    step::cargo(
        root,
        "consumer: the SDK against a live Order Processor",
        &["test", "-p", "order-processor-client"],
    )?;
    provider(root)?;
    breaking::check(root)
}

fn sdk_spec(root: &Path, check: bool) -> Result<(), String> {
    let started = Instant::now();
    let read = |path: &str| {
        fs::read_to_string(root.join(path)).map_err(|err| format!("cannot read {path}: {err}"))
    };
    let spec = read(SPEC)?;
    let copy = read(SDK_SPEC).unwrap_or_default();
    if spec != copy {
        if check {
            return Err(format!(
                "{SDK_SPEC} is not a copy of {SPEC}: run `cargo xtask contract` to refresh it"
            ));
        }
        fs::write(root.join(SDK_SPEC), spec)
            .map_err(|err| format!("cannot write {SDK_SPEC}: {err}"))?;
        println!("==> refreshed {SDK_SPEC}");
    }
    println!(
        "==> the SDK's spec is a copy of {SPEC}: ok in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn provider(root: &Path) -> Result<(), String> {
    let tools = python::venv(root)?;
    step::cargo(root, "build both services", &["build", "--bins"])?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let work = target.join("xtask-contract");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|err| format!("cannot create {}: {err}", work.display()))?;

    let storage_port = free_port()?;
    let storage_url = format!("http://127.0.0.1:{storage_port}");
    let _storage = Service::start(
        "storage-service",
        &target.join("debug/storage-service"),
        &[
            ("SERVER_PORT", &storage_port.to_string()),
            ("DATA_DIR", &work.join("storage").display().to_string()),
        ],
        &work,
    )?;
    wait_until_up(storage_port, "/health")?;

    let processor_port = free_port()?;
    let _processor = Service::start(
        "order-processor",
        &target.join("debug/order-processor"),
        &[
            ("SERVER_PORT", &processor_port.to_string()),
            ("STORAGE_SERVICE_URL", &storage_url),
        ],
        &work,
    )?;
    wait_until_up(processor_port, "/health/ready")?;

    schemathesis(root, &tools, "openapi/storage-service.yaml", &storage_url)?;
    schemathesis(
        root,
        &tools,
        "openapi/order-processor.yaml",
        &format!("http://127.0.0.1:{processor_port}"),
    )
}

fn schemathesis(root: &Path, tools: &Path, spec: &str, url: &str) -> Result<(), String> {
    step::run(
        &format!("provider: schemathesis, all checks, {spec} against {url}"),
        Command::new(tools.join("schemathesis"))
            .current_dir(root)
            .args([
                "--config-file",
                "xtask/schemathesis.toml",
                "run",
                spec,
                "--url",
                url,
            ])
            .args([
                "--checks",
                "all",
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                SEED,
            ])
            .args(["--generation-database", "none", "--no-color"]),
    )
}

/// A free loopback port, found by binding port 0. The service binds it a moment later.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

/// Polls `path` until it answers 200, for up to 30 s.
fn wait_until_up(port: u16, path: &str) -> Result<(), String> {
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
struct Service(Child);

impl Service {
    fn start(name: &str, binary: &Path, env: &[(&str, &str)], work: &Path) -> Result<Self, String> {
        let log_path = work.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .map_err(|err| format!("cannot create {}: {err}", log_path.display()))?;
        let err_log = log.try_clone().map_err(|err| err.to_string())?;
        let child = Command::new(binary)
            .current_dir(work)
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
