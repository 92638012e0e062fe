//! A real PostgreSQL server for tests: `initdb` and `pg_ctl` in a temporary directory, on a
//! free port on 127.0.0.1, as the unprivileged user `nobody` when the tests run as root
//! (PostgreSQL refuses to run as root). One server is shared by all the tests of a test binary
//! ([`PgServer::shared`]), and each test gets a database of its own
//! ([`PgServer::create_database`]); a test that stops its server starts its own.
//!
//! A watchdog process stops the server and removes its directory when the test process
//! ends, however it ends: a static is never dropped, and a killed process runs no code.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
};

use order_processor::storage::postgres::PostgresConfig;

use super::port;

/// How many times to try a fresh port when another process took the one picked.
const START_ATTEMPTS: u32 = 3;

pub struct PgServer {
    /// Stops the server if this process ends without dropping it.
    watchdog: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_nobody: bool,
}

impl PgServer {
    /// The server of this test binary, started on first use.
    pub fn shared() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(PgServer::start)
    }

    /// A server of its own, stopped and removed when dropped.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let as_nobody = is_root();
        let dir = temp_dir(as_nobody);
        let mut server = PgServer {
            watchdog: None,
            bin,
            dir,
            port: 0,
            as_nobody,
        };
        server.watchdog = Some(server.watch_parent());
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        for attempt in 1..=START_ATTEMPTS {
            server.port = port::free();
            match server.try_start() {
                Ok(()) => return server,
                Err(log) if attempt == START_ATTEMPTS => {
                    panic!("PostgreSQL did not start on port {}: {log}", server.port)
                }
                Err(_) => continue,
            }
        }
        unreachable!("the last attempt panics")
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database on this server, for one test.
    pub async fn create_database(&self) -> PostgresConfig {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect to the test server");
        let connection = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = connection.await;
        PostgresConfig::parse(&self.url(&name)).expect("a valid test database URL")
    }

    /// Stops the server, as an outage would.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data_dir()), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts the server again on the same port, with the same data.
    pub fn restart(&self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL did not start again: {log}");
        }
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            path(&self.dir)
        );
        let log = self.dir.join("pg.log");
        let output = self.command(
            "pg_ctl",
            &[
                "-D",
                path(&self.data_dir()),
                "-l",
                path(&log),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        if output.status.success() {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log).unwrap_or_else(|_| describe(&output)))
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts a process, in a process group of its own so that a Ctrl-C to the tests does not
    /// stop it first, that waits for this process to end, then stops the server immediately
    /// and removes its directory.
    fn watch_parent(&self) -> Child {
        let stop = self.command_line(
            "pg_ctl",
            &[
                "-D",
                path(&self.data_dir()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = path(&self.dir),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the PostgreSQL watchdog")
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args);
        assert!(
            output.status.success(),
            "{program} failed: {}",
            describe(&output)
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut command = if self.as_nobody {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL program")
    }

    /// The same command as [`Self::command`], as one line of `sh`.
    fn command_line(&self, program: &str, args: &[&str]) -> String {
        let mut words = Vec::new();
        if self.as_nobody {
            words.extend(["runuser", "-u", "nobody", "--"].map(str::to_owned));
        }
        words.push(path(&self.bin.join(program)).to_owned());
        words.extend(args.iter().map(|arg| (*arg).to_owned()));
        words
            .iter()
            .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.command(
            "pg_ctl",
            &[
                "-D",
                path(&self.data_dir()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// The directory of `initdb` and `pg_ctl`: on the `PATH`, or Debian's newest under
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect(
        "the PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under \
         /usr/lib/postgresql/*/bin: install Debian's `postgresql` (cargo xtask test does)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A fresh directory that the server's user owns.
fn temp_dir(as_nobody: bool) -> PathBuf {
    if as_nobody {
        let output = Command::new("runuser")
            .args([
                "-u",
                "nobody",
                "--",
                "mktemp",
                "-d",
                "-t",
                "pg-test-XXXXXXXX",
            ])
            .output()
            .expect("run mktemp as nobody");
        assert!(output.status.success(), "mktemp: {}", describe(&output));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    } else {
        let dir = std::env::temp_dir().join(format!("pg-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        dir
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

fn describe(output: &Output) -> String {
    format!(
        "{}; {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
