//! The `order-processor` binary as an operator runs it: configuration errors, JSON logs,
//! and SIGTERM draining in-flight requests before a clean exit.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use futures::StreamExt;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_order-processor");

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("binary-test-{}", uuid::Uuid::new_v4()))
}

#[test]
fn an_invalid_port_stops_startup_with_one_line_naming_the_variable() {
    let output = Command::new(BINARY)
        .env("SERVER_PORT", "eighty")
        .env_remove("STORAGE_SERVICE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("SERVER_PORT"), "{stderr}");
}

#[test]
fn a_malformed_storage_url_stops_startup_with_one_line_naming_the_variable() {
    let output = Command::new(BINARY)
        .env("STORAGE_SERVICE_URL", "storage:8083")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("STORAGE_SERVICE_URL"), "{stderr}");
}

/// The running binary, with its JSON log lines arriving on a channel.
struct Running {
    child: Child,
    logs: mpsc::Receiver<Value>,
    address: String,
}

impl Running {
    fn start(data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(BINARY)
            .env("SERVER_PORT", "0")
            .env("DATA_DIR", data_dir)
            .env("LOG_FORMAT", "json")
            .env_remove("STORAGE_SERVICE_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("not a JSON line: {line}"));
                if send.send(value).is_err() {
                    break;
                }
            }
        });
        let mut running = Self {
            child,
            logs,
            address: String::new(),
        };
        let listening =
            running.wait_for(|line| line["message"] == "listening; Swagger UI at /docs");
        let port = listening["address"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        running.address = format!("http://127.0.0.1:{port}");
        running
    }

    fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .logs
                .recv_timeout(Duration::from_secs(20))
                .expect("the expected log line");
            if wanted(&line) {
                return line;
            }
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn each_request_logs_one_json_line_with_method_route_status_latency_and_request_id() {
    let dir = temp_dir();
    let running = Running::start(&dir);

    let response = reqwest::Client::new()
        .get(format!(
            "{}/orders/{}",
            running.address,
            uuid::Uuid::new_v4()
        ))
        .header("x-request-id", "log-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let line = running.wait_for(|line| line["message"] == "request");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/orders/{id}");
    assert_eq!(line["status"], 404);
    assert!(line["latency"].is_string(), "{line}");
    assert_eq!(line["span"]["request_id"], "log-me-1", "{line}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_order_finish_then_exits_0() {
    let dir = temp_dir();
    let mut running = Running::start(&dir);

    // A body that arrives in two parts keeps the request in flight while SIGTERM lands.
    let (send_rest, rest) = tokio::sync::oneshot::channel::<()>();
    let body = futures::stream::iter([Ok::<_, std::io::Error>(
        b"{\"bookId\": \"book-1\", ".to_vec(),
    )])
    .chain(futures::stream::once(async move {
        let _ = rest.await;
        Ok(b"\"quantity\": 1, \"userId\": \"user-1\"}".to_vec())
    }));
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/orders", running.address))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.terminate();
    running.wait_for(|line| line["message"] == "shutting down: draining in-flight requests");
    send_rest.send(()).unwrap();

    let response = request
        .await
        .unwrap()
        .expect("the in-flight request gets its answer");
    assert_eq!(response.status().as_u16(), 201);
    let status = tokio::task::spawn_blocking(move || running.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}
