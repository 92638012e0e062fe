//! A service binary run as a child process, as an operator runs it: on port 0, with a data
//! directory of its own and the environment a test gives it, ready once it logs that it
//! listens, killed and reaped when dropped.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use super::fs::TempDir;

/// How long a test waits for a log line it expects before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

pub struct ChildService {
    /// The process itself, for a test to signal, wait for or read `/proc` of.
    pub child: Child,
    /// Its stdout, line by line, from the line after the one that says it listens.
    pub lines: mpsc::Receiver<String>,
    /// The lines before, up to the one that says it listens.
    pub startup: Vec<String>,
    url: String,
    _data_dir: TempDir,
}

impl ChildService {
    /// Starts `binary` with JSON logs at their default level, its own SQLite file and no
    /// Storage Service, unless `env` says otherwise; never what the environment of the tests
    /// happens to name.
    pub fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        let data_dir = TempDir::new();
        let mut command = Command::new(binary);
        command
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .env("DATA_DIR", data_dir.path())
            .env("LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .env_remove("STORAGE_SERVICE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("ORDERS_PER_USER_PER_MINUTE")
            .stdout(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start {binary}: {err}"));
        let stdout = child.stdout.take().expect("its stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = Self {
            child,
            lines,
            startup: Vec::new(),
            url: String::new(),
            _data_dir: data_dir,
        };
        let mut startup = Vec::new();
        let listening = service.wait_for(|line| {
            startup.push(line.to_owned());
            line.contains("listening")
        });
        service.startup = startup;
        // Both binaries log the address they got, in either log format; the tests keep them
        // on the loopback.
        let (_, after) = listening
            .split_once("127.0.0.1:")
            .unwrap_or_else(|| panic!("no address in the listening line: {listening}"));
        let port: u16 = after
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("the port in the listening line");
        service.url = format!("http://127.0.0.1:{port}");
        service
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reads log lines until one is `wanted`, and answers it.
    pub fn wait_for(&self, mut wanted: impl FnMut(&str) -> bool) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(PATIENCE)
                .expect("the expected log line");
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Kills the process at once, as SIGKILL would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        self.kill();
    }
}
