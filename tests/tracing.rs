//! One order followed across the hop: the caller's `traceparent` and `X-Request-Id` reach the
//! Storage Service on every call, retries included, and both services' log lines for the
//! order carry the trace id. A malformed `traceparent` starts a new trace.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use order_processor::{
    http::storage_api::spawn_reference_storage,
    recovery::RecoveryConfig,
    startup::{Application, Options},
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        sqlite::SqliteStore,
    },
};
use serde_json::{Value, json};

const ORDER_PROCESSOR: &str = env!("CARGO_BIN_EXE_order-processor");
const STORAGE_SERVICE: &str = env!("CARGO_BIN_EXE_storage-service");

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("tracing-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// A recording proxy in front of the Storage Service

/// What the Storage Service was sent: the method, path and headers of one request.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    traceparent: Option<String>,
    request_id: Option<String>,
}

/// Forwards every request to the Storage Service and records it; the first `fail_creates`
/// order creations are answered 503 instead, as a proxy in trouble would, so that they are
/// retried.
struct RecordingProxy {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl RecordingProxy {
    async fn start(upstream: String, fail_creates: usize) -> Self {
        let listener = tokio::net::TcpListener::bind(loopback())
            .await
            .expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let recorded = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, client) = (upstream.clone(), client.clone());
                let (recorded, failed) = (recorded.clone(), failed.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|value| value.to_str().ok())
                                .map(str::to_owned)
                        };
                        let call = Call {
                            method: request.method().to_string(),
                            path: request.uri().path().to_owned(),
                            traceparent: header("traceparent"),
                            request_id: header("x-request-id"),
                        };
                        let fail = call.method == "POST"
                            && call.path == "/orders"
                            && failed.fetch_add(1, Ordering::Relaxed) < fail_creates;
                        recorded.lock().unwrap().push(call);
                        forward(request, fail, upstream.clone(), client.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, calls }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// Forwards the request with its headers, or answers 503 when `fail`.
async fn forward(
    request: Request<Incoming>,
    fail: bool,
    upstream: String,
    client: reqwest::Client,
) -> Result<Response<Full<Bytes>>, reqwest::Error> {
    if fail {
        return Ok(Response::builder()
            .status(503)
            .body(Full::new(Bytes::from_static(b"upstream unavailable")))
            .expect("a response"));
    }
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_or_else(|_| Bytes::new(), |body| body.to_bytes());
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    headers.remove("host");
    let answer = client
        .request(parts.method, format!("{upstream}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(answer.bytes().await?))
        .expect("a response"))
}

/// An Order Processor in-process over the reference Storage Service on `book-1` with ample
/// stock, reached through a [`RecordingProxy`].
struct Services {
    order_processor: String,
    proxy: RecordingProxy,
    _storage: order_processor::http::server::Running,
    _order_processor: order_processor::http::server::Running,
    _dir: TempDir,
}

impl Services {
    async fn start(fail_creates: usize, recovery: RecoveryConfig) -> Self {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.0.join("storage.db")).expect("open the store");
        let storage = spawn_reference_storage(Arc::new(store), loopback())
            .await
            .expect("start the Storage Service");
        let client = reqwest::Client::new();
        let book = client
            .put(format!("{}/books/book-1", storage.url()))
            .json(&json!({
                "title": "A Title", "author": "An Author", "price": 1299,
                "currency": "EUR", "quantity": 10
            }))
            .send()
            .await
            .expect("put a book");
        assert!(book.status().is_success(), "{}", book.status());
        let proxy = RecordingProxy::start(storage.url(), fail_creates).await;
        let http = HttpStorage::new(&proxy.url, HttpStorageConfig::default())
            .expect("build the storage client");
        let order_processor = Application::build_with(
            http,
            loopback(),
            Options {
                recovery,
                ..Options::default()
            },
        )
        .await
        .expect("bind the order processor")
        .spawn();
        Self {
            order_processor: order_processor.url(),
            proxy,
            _storage: storage,
            _order_processor: order_processor,
            _dir: dir,
        }
    }

    /// Places an order for one copy of `book-1` with the given headers; answers its status
    /// and the request id it was answered with.
    async fn order(&self, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/orders", self.order_processor))
            .json(&json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .expect("an ASCII request id")
            .to_owned();
        (response.status().as_u16(), request_id)
    }

    /// The calls made for orders, leaving out the lists of the recovery task.
    fn order_calls(&self) -> Vec<Call> {
        self.proxy
            .calls()
            .into_iter()
            .filter(|call| call.path.starts_with("/orders") && !is_list(call))
            .collect()
    }
}

fn is_list(call: &Call) -> bool {
    call.method == "GET" && call.path == "/orders"
}

/// The trace id and parent span id of a `traceparent` the Order Processor sent, after
/// checking its form.
fn sent_ids(call: &Call) -> (String, String) {
    let value = call
        .traceparent
        .as_deref()
        .unwrap_or_else(|| panic!("no traceparent on {call:?}"));
    let fields: Vec<&str> = value.split('-').collect();
    assert_eq!(fields.len(), 4, "{value}");
    assert_eq!(fields[0], "00", "{value}");
    assert_eq!(fields[1].len(), 32, "{value}");
    assert_eq!(fields[2].len(), 16, "{value}");
    assert_ne!(fields[1], "0".repeat(32), "{value}");
    assert_ne!(fields[2], "0".repeat(16), "{value}");
    (fields[1].to_owned(), fields[2].to_owned())
}

#[tokio::test]
async fn every_storage_call_of_an_order_carries_the_callers_trace_and_request_id() {
    let services = Services::start(0, RecoveryConfig::default()).await;
    let (status, request_id) = services
        .order(&[
            ("traceparent", &traceparent()),
            ("x-request-id", "order-trace-1"),
        ])
        .await;
    assert_eq!(status, 201);
    assert_eq!(request_id, "order-trace-1");

    let calls = services.order_calls();
    // Record, take the stock, confirm.
    assert!(calls.len() >= 3, "{calls:?}");
    let (_, span_id) = sent_ids(&calls[0]);
    assert_ne!(span_id, CALLER_SPAN_ID, "the Order Processor's own span");
    for call in &calls {
        assert_eq!(
            sent_ids(call),
            (TRACE_ID.to_owned(), span_id.clone()),
            "{call:?}"
        );
        assert!(call.traceparent.as_deref().unwrap().ends_with("-01"));
        assert_eq!(
            call.request_id.as_deref(),
            Some("order-trace-1"),
            "{call:?}"
        );
    }
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace_carried_to_the_storage() {
    let services = Services::start(0, RecoveryConfig::default()).await;
    let malformed = [
        format!("00-{}-{CALLER_SPAN_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{}-{CALLER_SPAN_ID}-01", "0".repeat(32)),
        format!("01-{TRACE_ID}-{CALLER_SPAN_ID}-01"),
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}"),
    ];
    let mut traces = Vec::new();
    for value in &malformed {
        let before = services.order_calls().len();
        let (status, request_id) = services.order(&[("traceparent", value)]).await;
        assert_eq!(status, 201, "{value}");
        let calls = services.order_calls().split_off(before);
        assert!(!calls.is_empty(), "{value}");
        let (trace_id, _) = sent_ids(&calls[0]);
        assert_ne!(trace_id, TRACE_ID, "{value}");
        for call in &calls {
            assert_eq!(sent_ids(call).0, trace_id, "{value}: {call:?}");
            // Without one from the caller, the request id the service gave is the one sent.
            assert_eq!(call.request_id.as_deref(), Some(request_id.as_str()));
        }
        traces.push(trace_id);
    }
    traces.dedup();
    assert_eq!(
        traces.len(),
        malformed.len(),
        "a new trace each: {traces:?}"
    );
}

#[tokio::test]
async fn a_retried_call_carries_the_same_trace_and_request_id_as_the_first_attempt() {
    let services = Services::start(2, RecoveryConfig::default()).await;
    let (status, _) = services
        .order(&[
            ("traceparent", &traceparent()),
            ("x-request-id", "order-retried"),
        ])
        .await;
    assert_eq!(status, 201);

    let calls = services.order_calls();
    let creates: Vec<&Call> = calls
        .iter()
        .filter(|call| call.method == "POST" && call.path == "/orders")
        .collect();
    assert_eq!(
        creates.len(),
        3,
        "two failed attempts, then one that went through"
    );
    let first = sent_ids(creates[0]);
    assert_eq!(first.0, TRACE_ID);
    for call in &calls {
        assert_eq!(sent_ids(call), first, "{call:?}");
        assert_eq!(call.request_id.as_deref(), Some("order-retried"));
    }
}

#[tokio::test]
async fn each_recovery_round_calls_the_storage_in_a_trace_of_its_own() {
    let recovery = RecoveryConfig {
        after: Duration::from_secs(30),
        period: Duration::from_millis(50),
    };
    let services = Services::start(0, recovery).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let rounds = loop {
        let rounds: Vec<Call> = services.proxy.calls().into_iter().filter(is_list).collect();
        if rounds.len() >= 2 || Instant::now() > deadline {
            break rounds;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(rounds.len() >= 2, "{rounds:?}");
    let (first, second) = (sent_ids(&rounds[0]), sent_ids(&rounds[1]));
    assert_ne!(first.0, second.0, "one trace per round");
    for round in &rounds {
        assert_eq!(round.request_id, None, "no request started it: {round:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Both binaries and their JSON logs

/// A service binary as a child process, its JSON log lines on a channel.
struct Process {
    child: Child,
    lines: mpsc::Receiver<Value>,
    url: String,
}

impl Process {
    fn start(binary: &str, env: &[(&str, &str)], listening: &str, field: &str) -> Self {
        let mut command = Command::new(binary);
        command
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .env("LOG_FORMAT", "json")
            .env_remove("STORAGE_SERVICE_URL")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start a service binary");
        let stdout = child.stdout.take().expect("its stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("not a JSON line: {line}"));
                if send.send(value).is_err() {
                    break;
                }
            }
        });
        let mut process = Self {
            child,
            lines,
            url: String::new(),
        };
        let line = process
            .next_matching(Duration::from_secs(20), |line| line["message"] == listening)
            .unwrap_or_else(|| panic!("{binary} did not log {listening:?}"));
        let address = line[field].as_str().expect("the listening address");
        let port = address.rsplit(':').next().expect("a port");
        process.url = format!("http://127.0.0.1:{port}");
        process
    }

    fn next_matching(&self, within: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?;
            if wanted(&line) {
                return Some(line);
            }
        }
    }

    /// The lines of the trace `trace_id`, until its access line of `route` (the last line
    /// logged for a request) and those logged within a short while after it.
    fn lines_of_trace(&self, trace_id: &str, last_route: &str) -> Vec<Value> {
        let of_trace = |line: &Value| line["span"]["trace_id"] == trace_id;
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if of_trace(&line) {
                let last = line["message"] == "request" && line["route"] == last_route;
                lines.push(line);
                if last {
                    break;
                }
            }
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            if of_trace(&line) {
                lines.push(line);
            }
        }
        lines
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_order_is_followed_across_both_services_logs_by_its_trace_id() {
    let dir = TempDir::new();
    let storage = Process::start(
        STORAGE_SERVICE,
        &[
            ("DATA_DIR", dir.0.to_str().expect("a UTF-8 path")),
            ("RUST_LOG", "info"),
        ],
        "storage service listening",
        "addr",
    );
    // The storage client's debug line on a refusal is one logged while serving the order
    // that is not its access line.
    let order_processor = Process::start(
        ORDER_PROCESSOR,
        &[
            ("STORAGE_SERVICE_URL", &storage.url),
            ("RUST_LOG", "info,order_processor::storage=debug"),
        ],
        "listening; Swagger UI at /docs",
        "address",
    );

    // `book-5` of the demo catalogue has no stock: the order is recorded, refused and
    // rejected, three calls to the storage.
    let response = reqwest::Client::new()
        .post(format!("{}/orders", order_processor.url))
        .header("traceparent", traceparent())
        .header("x-request-id", "follow-me-1")
        .json(&json!({"bookId": "book-5", "quantity": 1, "userId": "user-1"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 409);
    assert_eq!(response.headers()["x-request-id"], "follow-me-1");
    assert!(response.headers().get("traceparent").is_none());

    let processor_lines = order_processor.lines_of_trace(TRACE_ID, "/orders");
    let access = processor_lines
        .iter()
        .find(|line| line["message"] == "request")
        .unwrap_or_else(|| panic!("no access line in {processor_lines:?}"));
    assert_eq!(access["method"], "POST");
    assert_eq!(access["status"], 409);
    let span = &access["span"];
    assert_eq!(span["request_id"], "follow-me-1", "{access}");
    assert_eq!(span["parent_id"], CALLER_SPAN_ID, "{access}");
    let processor_span_id = span["span_id"].as_str().expect("a span id").to_owned();
    assert_ne!(processor_span_id, CALLER_SPAN_ID);
    assert!(
        processor_lines
            .iter()
            .any(|line| line["message"] == "storage refused the request"),
        "a line logged while serving the order carries its trace: {processor_lines:?}"
    );
    for line in &processor_lines {
        assert_eq!(line["span"]["request_id"], "follow-me-1", "{line}");
    }

    let storage_lines = storage.lines_of_trace(TRACE_ID, "/orders/{id}/status");
    let routes: Vec<&str> = storage_lines
        .iter()
        .filter(|line| line["message"] == "request")
        .filter_map(|line| line["route"].as_str())
        .collect();
    assert_eq!(
        routes,
        ["/orders", "/orders/{id}/stock", "/orders/{id}/status"],
        "{storage_lines:?}"
    );
    for line in &storage_lines {
        let span = &line["span"];
        assert_eq!(span["request_id"], "follow-me-1", "{line}");
        assert_eq!(span["parent_id"], processor_span_id.as_str(), "{line}");
        assert_ne!(span["span_id"], processor_span_id.as_str(), "{line}");
    }
}

/// Spans exported to a collector, with the `otlp` feature:
/// `cargo nextest run -p order-processor --test tracing --features otlp`.
#[cfg(feature = "otlp")]
mod otlp {
    use super::*;

    /// A collector that keeps the body of every export it is sent.
    struct Collector {
        url: String,
        exports: Arc<Mutex<Vec<Bytes>>>,
    }

    impl Collector {
        async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind(loopback())
                .await
                .expect("bind the collector");
            let url = format!("http://{}", listener.local_addr().expect("its address"));
            let exports = Arc::new(Mutex::new(Vec::new()));
            let kept = exports.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let kept = kept.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: Request<Incoming>| {
                            let kept = kept.clone();
                            async move {
                                if request.uri().path() == "/v1/traces" {
                                    let body = request.into_body().collect().await?.to_bytes();
                                    kept.lock().unwrap().push(body);
                                }
                                let mut response = Response::new(Full::new(Bytes::new()));
                                response.headers_mut().insert(
                                    "content-type",
                                    hyper::header::HeaderValue::from_static(
                                        "application/x-protobuf",
                                    ),
                                );
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { url, exports }
        }

        /// Whether the spans exported so far hold every id of `hex_ids`, each as the bytes
        /// that protobuf carries.
        fn has_all(&self, hex_ids: &[&str]) -> bool {
            let exports = self.exports.lock().unwrap();
            hex_ids.iter().all(|id| {
                let bytes: Vec<u8> = (0..id.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&id[i..i + 2], 16).expect("a hex id"))
                    .collect();
                exports
                    .iter()
                    .any(|export| export.windows(bytes.len()).any(|window| window == bytes))
            })
        }
    }

    #[tokio::test]
    async fn both_services_export_the_spans_their_logs_and_headers_name() {
        let collector = Collector::start().await;
        let otlp = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "info"),
        ];
        let dir = TempDir::new();
        let data_dir = [("DATA_DIR", dir.0.to_str().expect("a UTF-8 path"))];
        let storage = Process::start(
            STORAGE_SERVICE,
            &[&otlp[..], &data_dir].concat(),
            "storage service listening",
            "addr",
        );
        let storage_url = [("STORAGE_SERVICE_URL", storage.url.as_str())];
        let order_processor = Process::start(
            ORDER_PROCESSOR,
            &[&otlp[..], &storage_url].concat(),
            "listening; Swagger UI at /docs",
            "address",
        );

        let response = reqwest::Client::new()
            .post(format!("{}/orders", order_processor.url))
            .header("traceparent", traceparent())
            .json(&json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"}))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), 201);

        let processor_lines = order_processor.lines_of_trace(TRACE_ID, "/orders");
        let processor_span = processor_lines
            .iter()
            .find(|line| line["message"] == "request")
            .and_then(|line| line["span"]["span_id"].as_str())
            .unwrap_or_else(|| panic!("no access line in {processor_lines:?}"))
            .to_owned();
        let storage_lines = storage.lines_of_trace(TRACE_ID, "/orders/{id}/status");
        let storage_spans: Vec<&str> = storage_lines
            .iter()
            .filter(|line| line["message"] == "request")
            .filter_map(|line| {
                assert_eq!(line["span"]["parent_id"], processor_span.as_str(), "{line}");
                line["span"]["span_id"].as_str()
            })
            .collect();
        assert_eq!(storage_spans.len(), 3, "{storage_lines:?}");

        // The caller's span appears as the parent of the Order Processor's.
        let mut wanted = vec![TRACE_ID, CALLER_SPAN_ID, processor_span.as_str()];
        wanted.extend(&storage_spans);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !collector.has_all(&wanted) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            collector.has_all(&wanted),
            "the collector did not receive the spans {wanted:?}"
        );
    }
}
