//! The server limits of both services, over real sockets on 127.0.0.1: request deadline, load
//! shedding, slow and hostile clients, what is logged of a request, and what a replica costs
//! under each kind of pressure. Raw TCP where a well-behaved HTTP client cannot send what a
//! hostile one does.
//!
//! The pressure tests run the real binaries as child processes, to read their memory from
//! `/proc`, and take the file's lock alone so that the other tests' work does not slow their
//! health probes; the other tests share it.

mod support {
    pub mod fs;
    pub mod net;
    pub mod process;
    pub mod sqlite;
}

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use order_processor::{
    http::{
        limits::ServerLimits,
        server::{Running, Server},
        storage_api,
    },
    startup::Application,
    storage::http::{HttpStorage, HttpStorageConfig},
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::RwLock,
    task::JoinHandle,
};

use support::{fs::TempDir, net::LOOPBACK, process::ChildService, sqlite::fresh_store};

const ORDER_PROCESSOR: &str = env!("CARGO_BIN_EXE_order-processor");
const STORAGE_SERVICE: &str = env!("CARGO_BIN_EXE_storage-service");

/// Taken for writing by the pressure tests, for reading by the others.
static MACHINE: RwLock<()> = RwLock::const_new(());

/// The largest memory a replica may reach under pressure (its pod has 256 MiB), and the time
/// within which it must still answer its liveness probe.
const MAX_RSS_BYTES: u64 = 200 * 1024 * 1024;
const MAX_HEALTH_LATENCY: Duration = Duration::from_millis(100);

/// Slack allowed past a deadline for the answer to be written and read on a busy machine.
const MARGIN: Duration = Duration::from_millis(500);

const ORDER: &str = r#"{"bookId":"book-1","quantity":1,"userId":"user-1"}"#;

// ---------------------------------------------------------------------------------------
// Servers under test and stand-ins

/// A Storage Service that accepts connections and never answers.
struct HangingStorage {
    url: String,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HangingStorage {
    async fn start() -> Self {
        let listener = TcpListener::bind(LOOPBACK).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((stream, _)) = listener.accept().await {
                    held.push(stream);
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Self {
            url,
            accepted,
            task,
        }
    }

    /// Waits until `count` connections are held, that is until as many requests are stuck in
    /// the service under test.
    async fn wait_for_connections(&self, count: usize) {
        let started = Instant::now();
        while self.accepted.load(Ordering::SeqCst) < count {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} of {count} storage connections",
                self.accepted.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for HangingStorage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An Order Processor on a loopback port, held to `limits`, over the Storage Service at
/// `storage_url`.
async fn order_processor(limits: ServerLimits, storage_url: &str) -> Running {
    let storage = HttpStorage::new(storage_url, HttpStorageConfig::default()).unwrap();
    Application::build(storage, LOOPBACK)
        .await
        .unwrap()
        .with_limits(limits)
        .spawn()
}

/// A reference Storage Service on a loopback port, held to `limits`, over a fresh database.
async fn storage_service(limits: ServerLimits) -> (Running, TempDir) {
    let (store, dir) = fresh_store();
    let running = Server::bind(LOOPBACK)
        .await
        .unwrap()
        .with_limits(limits)
        .spawn(storage_api::app(Arc::new(store)));
    (running, dir)
}

/// The `host:port` of a server at `url`, for a raw connection.
fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The Problem of this answer, after checking that it is one with this status.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|value| value.starts_with("application/json")),
            "{:?}",
            self.headers
        );
        let problem: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        assert_eq!(problem["status"], status, "{problem}");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("/problems/")),
            "{problem}"
        );
        assert!(problem["title"].is_string(), "{problem}");
        problem
    }

    fn assert_retry_after(&self) {
        let seconds = self.header("retry-after").expect("Retry-After");
        assert!(
            seconds.parse::<u32>().is_ok_and(|seconds| seconds >= 1),
            "{seconds}"
        );
    }
}

async fn connect(address: &str) -> TcpStream {
    TcpStream::connect(address).await.expect("connect")
}

async fn send(address: &str, request: &[u8]) -> TcpStream {
    let mut stream = connect(address).await;
    stream.write_all(request).await.expect("send");
    stream
}

/// Reads one answer with a `Content-Length` body; `None` when the connection ends first.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => body.extend_from_slice(&chunk[..read]),
        }
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// Reads one answer, failing the test when none comes within `within`.
async fn answer(stream: &mut TcpStream, within: Duration) -> RawResponse {
    tokio::time::timeout(within, read_response(stream))
        .await
        .expect("an answer in time")
        .expect("an answer before the connection ends")
}

/// Whether the server closes the connection within `within`, reading and discarding
/// whatever it still sends.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

fn post_order() -> Vec<u8> {
    format!(
        "POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ORDER}",
        ORDER.len()
    )
    .into_bytes()
}

/// One liveness probe as the kubelet makes it: a new connection, one request, the answer.
async fn probe_health(address: &str, path: &str) -> Duration {
    let started = Instant::now();
    let request = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    let mut stream = send(address, request.as_bytes()).await;
    let response = answer(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(response.status, 200);
    started.elapsed()
}

/// Five probes 50 ms apart, sorted; the median is what is held to the bound, so that one
/// scheduling hiccup of the shared test machine does not decide.
async fn probe_health_five_times(address: &str, path: &str) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for _ in 0..5 {
        latencies.push(probe_health(address, path).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    latencies
}

// ---------------------------------------------------------------------------------------
// Every request has a deadline

#[tokio::test]
async fn an_order_that_cannot_finish_in_time_answers_503_with_retry_after_within_the_deadline_plus_a_margin()
 {
    let _shared = MACHINE.read().await;
    let storage = HangingStorage::start().await;
    let deadline = Duration::from_millis(1000);
    let server = order_processor(
        ServerLimits {
            request_deadline: deadline,
            ..ServerLimits::default()
        },
        &storage.url,
    )
    .await;

    for request in [
        post_order(),
        get(&format!("/orders/{}", uuid::Uuid::new_v4())),
    ] {
        let started = Instant::now();
        let mut stream = send(&address(&server.url()), &request).await;
        let response = answer(&mut stream, deadline * 10).await;
        let elapsed = started.elapsed();
        // The storage calls end a tenth of the deadline early, so the handler answers that
        // the storage did not, naming the order it may have recorded, before the cut.
        let problem = response.problem(503);
        assert_eq!(problem["type"], "/problems/storage-unavailable");
        response.assert_retry_after();
        assert!(
            elapsed >= deadline.mul_f64(0.9) && elapsed < deadline + MARGIN,
            "answered after {elapsed:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Load shedding

#[tokio::test]
async fn past_the_bound_on_requests_in_flight_the_order_processor_answers_503_with_retry_after_at_once()
 {
    let _shared = MACHINE.read().await;
    let storage = HangingStorage::start().await;
    let server = order_processor(
        ServerLimits {
            max_requests_in_flight: 2,
            ..ServerLimits::default()
        },
        &storage.url,
    )
    .await;
    let address = address(&server.url());
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(send(&address, &post_order()).await);
    }
    storage.wait_for_connections(2).await;

    let started = Instant::now();
    let mut stream = send(&address, &post_order()).await;
    let response = answer(&mut stream, Duration::from_secs(5)).await;
    let problem = response.problem(503);
    assert_eq!(problem["type"], "/problems/overloaded");
    response.assert_retry_after();
    // "At once": long before the held requests' own 5 s deadline ends them.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    for path in ["/health", "/health/live"] {
        let mut stream = send(&address, &get(path)).await;
        assert_eq!(
            answer(&mut stream, Duration::from_secs(1)).await.status,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn past_the_bound_on_requests_in_flight_the_storage_service_answers_503_and_its_health_endpoint_still_200()
 {
    let _shared = MACHINE.read().await;
    let (server, _dir) = storage_service(ServerLimits {
        max_requests_in_flight: 1,
        ..ServerLimits::default()
    })
    .await;
    let address = address(&server.url());
    // A body that has not finished arriving keeps its request in the application.
    let mut slow = send(
        &address,
        b"PUT /books/b1 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await;
    let started = Instant::now();
    loop {
        let mut stream = send(&address, &get("/books/b1")).await;
        let response = answer(&mut stream, Duration::from_secs(5)).await;
        if response.status == 503 {
            assert_eq!(response.problem(503)["type"], "/problems/overloaded");
            response.assert_retry_after();
            break;
        }
        // The slow request may not have been admitted yet.
        assert!(started.elapsed() < Duration::from_secs(2), "never shed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stream = send(&address, &get("/health")).await;
    assert_eq!(
        answer(&mut stream, Duration::from_secs(1)).await.status,
        200
    );
    slow.write_all(b" ").await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Slow and hostile clients

#[tokio::test]
async fn a_connection_whose_head_does_not_arrive_in_time_is_closed() {
    let _shared = MACHINE.read().await;
    let timeout = Duration::from_millis(300);
    let (server, _dir) = storage_service(ServerLimits {
        header_read_timeout: timeout,
        ..ServerLimits::default()
    })
    .await;
    let address = address(&server.url());

    let started = Instant::now();
    let mut silent = connect(&address).await;
    let mut partial = send(&address, b"GET /health HTTP/1.1\r\nHost: te").await;
    assert!(closed_within(&mut silent, timeout * 10).await);
    assert!(closed_within(&mut partial, timeout * 10).await);
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let _shared = MACHINE.read().await;
    let timeout = Duration::from_millis(300);
    let storage = HangingStorage::start().await;
    let server = order_processor(
        ServerLimits {
            body_read_timeout: timeout,
            ..ServerLimits::default()
        },
        &storage.url,
    )
    .await;

    let started = Instant::now();
    let mut stream = send(
        &address(&server.url()),
        b"POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"bookId\"",
    )
    .await;
    let response = answer(&mut stream, timeout * 10).await;
    assert!(started.elapsed() >= timeout);
    assert_eq!(response.problem(408)["type"], "/problems/request-timeout");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lasts_its_idle_timeout_not_the_header_timeout() {
    let _shared = MACHINE.read().await;
    let header_read_timeout = Duration::from_millis(200);
    let idle_timeout = Duration::from_millis(1200);
    let (server, _dir) = storage_service(ServerLimits {
        header_read_timeout,
        idle_timeout,
        ..ServerLimits::default()
    })
    .await;

    let mut stream = send(&address(&server.url()), &get("/health")).await;
    assert_eq!(
        answer(&mut stream, Duration::from_secs(2)).await.status,
        200
    );
    tokio::time::sleep(header_read_timeout * 2).await;
    stream.write_all(&get("/health")).await.unwrap();
    assert_eq!(
        answer(&mut stream, Duration::from_secs(2)).await.status,
        200
    );
    let idle_since = Instant::now();
    assert!(closed_within(&mut stream, idle_timeout * 3).await);
    assert!(
        idle_since.elapsed() >= idle_timeout,
        "{:?}",
        idle_since.elapsed()
    );
}

#[tokio::test]
async fn a_request_may_outlast_the_header_timeout_and_a_head_after_an_idle_spell_is_cut_at_its_own()
{
    let _shared = MACHINE.read().await;
    let storage = HangingStorage::start().await;
    let header_read_timeout = Duration::from_millis(200);
    let request_deadline = Duration::from_millis(800);
    let idle_timeout = Duration::from_secs(5);
    let server = order_processor(
        ServerLimits {
            header_read_timeout,
            request_deadline,
            idle_timeout,
            ..ServerLimits::default()
        },
        &storage.url,
    )
    .await;

    // Four header timeouts in the application: answered, on a connection kept open.
    let mut stream = send(&address(&server.url()), &post_order()).await;
    let response = answer(&mut stream, request_deadline * 5).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("connection"), None);
    // Idle past the header timeout, then half a head: closed at the head's deadline, long
    // before the idle one.
    tokio::time::sleep(header_read_timeout * 2).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let head_started = Instant::now();
    assert!(closed_within(&mut stream, idle_timeout / 2).await);
    assert!(
        head_started.elapsed() >= header_read_timeout,
        "{:?}",
        head_started.elapsed()
    );
}

#[tokio::test]
async fn past_the_bound_on_connections_a_new_one_takes_the_place_of_the_oldest_silent_one() {
    let _shared = MACHINE.read().await;
    let (server, _dir) = storage_service(ServerLimits {
        max_connections: 3,
        ..ServerLimits::default()
    })
    .await;
    let address = address(&server.url());
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(connect(&address).await);
        // Accepted in this order, so the first is the oldest.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut stream = send(&address, &get("/health")).await;
    assert_eq!(
        answer(&mut stream, Duration::from_secs(2)).await.status,
        200
    );
    assert!(closed_within(&mut silent[0], Duration::from_secs(2)).await);
    assert!(!closed_within(&mut silent[1], Duration::from_millis(200)).await);
}

#[tokio::test]
async fn when_every_connection_has_a_request_in_progress_a_new_connection_is_closed_at_once() {
    let _shared = MACHINE.read().await;
    let storage = HangingStorage::start().await;
    let server = order_processor(
        ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        },
        &storage.url,
    )
    .await;
    let address = address(&server.url());
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(send(&address, &post_order()).await);
    }
    storage.wait_for_connections(2).await;

    let mut refused = send(&address, &get("/health/live")).await;
    assert!(closed_within(&mut refused, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_refused_with_goaway_http_1_1_required() {
    let _shared = MACHINE.read().await;
    let (server, _dir) = storage_service(ServerLimits::default()).await;
    let mut stream = send(
        &address(&server.url()),
        // The client preface, then an empty SETTINGS frame.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
    )
    .await;
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    let goaway = received
        .windows(17)
        .find(|frame| frame[3] == 0x7 && frame[5..9] == [0, 0, 0, 0])
        .expect("a GOAWAY frame");
    assert_eq!(goaway[13..17], [0, 0, 0, 0xd], "HTTP_1_1_REQUIRED");
}

#[tokio::test]
async fn an_h2c_upgrade_request_is_answered_over_http_1_1() {
    let _shared = MACHINE.read().await;
    let (server, _dir) = storage_service(ServerLimits::default()).await;
    let mut stream = send(
        &address(&server.url()),
        b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let response = answer(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(response.status, 200);
}

// ---------------------------------------------------------------------------------------
// What is logged, and errors below the application

#[tokio::test]
async fn a_request_id_of_an_unsafe_form_is_replaced_and_a_safe_one_echoed() {
    let _shared = MACHINE.read().await;
    let (server, _dir) = storage_service(ServerLimits::default()).await;
    let client = reqwest::Client::new();
    let request_id = |id: &str| {
        let request = client
            .get(format!("{}/health", server.url()))
            .header("x-request-id", id)
            .send();
        async move {
            request.await.unwrap().headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };

    let safe = "Order-17_retry.2";
    assert_eq!(request_id(safe).await, safe);
    for unsafe_id in [
        "abc}:request{request_id=FORGED".to_owned(),
        "a b".to_owned(),
        "x".repeat(129),
    ] {
        let echoed = request_id(&unsafe_id).await;
        assert_ne!(echoed, unsafe_id);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    }
}

#[tokio::test]
async fn a_request_target_over_the_limit_is_answered_414_with_a_problem() {
    let _shared = MACHINE.read().await;
    let (server, _dir) = storage_service(ServerLimits::default()).await;
    let path = format!("/books/{}", "b".repeat(9 * 1024));
    let mut stream = send(&address(&server.url()), &get(&path)).await;
    let response = answer(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(response.problem(414)["type"], "/problems/uri-too-long");
}

#[tokio::test]
async fn request_headers_over_the_limit_are_answered_431_with_a_problem() {
    let _shared = MACHINE.read().await;
    let storage = HangingStorage::start().await;
    let server = order_processor(ServerLimits::default(), &storage.url).await;
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    let mut stream = send(&address(&server.url()), request.as_bytes()).await;
    let response = answer(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(response.problem(431)["type"], "/problems/headers-too-large");
}

/// Starts `binary` with logs in `log_format`, and waits until it listens.
fn start(binary: &str, log_format: &str, env: &[(&str, &str)]) -> ChildService {
    let mut env = env.to_vec();
    env.push(("LOG_FORMAT", log_format));
    ChildService::start(binary, &env)
}

/// The lines `process` has logged since they were last read.
fn unread_lines(process: &ChildService) -> Vec<String> {
    process.lines.try_iter().collect()
}

/// The peak resident memory of the process so far (`VmHWM`), in bytes.
fn peak_rss(process: &ChildService) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.child.id()))
        .expect("the process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("VmHWM")
        * 1024
}

fn open_files(process: &ChildService) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", process.child.id()))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn heads_the_parser_refuses_are_answered_with_their_status_and_logged_once_each() {
    let _shared = MACHINE.read().await;
    let process = start(STORAGE_SERVICE, "json", &[]);

    let malformed = b"GET /health HTTP/1.1 extra\r\nHost: test\r\n\r\n".to_vec();
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(40 * 1024)
    )
    .into_bytes();
    for (request, status) in [(malformed, 400), (huge, 431)] {
        let mut stream = send(&address(process.url()), &request).await;
        let response = answer(&mut stream, Duration::from_secs(2)).await;
        assert_eq!(response.status, status);
        let logged = process.wait_for(|line| line.contains("refused a request"));
        let line: Value = serde_json::from_str(&logged).unwrap();
        assert_eq!(line["status"], status, "{line}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !unread_lines(&process)
            .iter()
            .any(|line| line.contains("refused a request")),
        "each refusal is logged once"
    );
}

#[tokio::test]
async fn text_logs_quote_and_bound_what_the_client_sent_and_carry_no_colour_codes() {
    let _shared = MACHINE.read().await;
    let process = start(ORDER_PROCESSOR, "text", &[]);

    let method = "A".repeat(10_000);
    let request = format!(
        "{method} /health HTTP/1.1\r\nHost: test\r\nX-Request-Id: abc}}:request{{request_id=FORGED\r\n\r\n"
    );
    let mut stream = send(&address(process.url()), request.as_bytes()).await;
    let response = answer(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(
        response.problem(405)["type"],
        "/problems/method-not-allowed"
    );

    let logged = process.wait_for(|line| line.contains("}: request "));
    assert!(!logged.contains("FORGED"), "{logged}");
    assert!(
        logged.contains(&format!("method=\"{}…\"", "A".repeat(16))),
        "{logged}"
    );
    assert!(logged.len() < 400, "{logged}");
    let mut everything = unread_lines(&process);
    everything.push(logged);
    assert!(
        everything.iter().all(|line| !line.contains('\x1b')),
        "{everything:?}"
    );
}

#[test]
fn a_bad_server_limit_stops_either_binary_with_one_line_naming_the_variable() {
    for binary in [ORDER_PROCESSOR, STORAGE_SERVICE] {
        let output = Command::new(binary)
            .env("SERVER_PORT", "0")
            .env("SERVER_MAX_CONNECTIONS", "none")
            .env_remove("STORAGE_SERVICE_URL")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{binary}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("SERVER_MAX_CONNECTIONS"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// What a replica costs under pressure

/// Lets this test process hold many thousands of sockets.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// Connections opened in parallel by the pressure tests: enough to open thousands in a
/// second or two, few enough to stay within the listener's backlog.
const CONNECTING_AT_ONCE: usize = 64;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(what: &str, process: &ChildService, latencies: &[Duration]) {
    eprintln!(
        "{what}: peak RSS {:.1} MiB, {} open files, health probes {:?}",
        mib(peak_rss(process)),
        open_files(process),
        latencies
    );
}

#[tokio::test]
async fn under_8000_stalled_connections_either_service_stays_under_200_mib_and_answers_health_within_100_ms()
 {
    let _alone = MACHINE.write().await;
    raise_open_file_limit();
    for (binary, health) in [
        (ORDER_PROCESSOR, "/health/live"),
        (STORAGE_SERVICE, "/health"),
    ] {
        let process = start(binary, "json", &[]);
        let address = address(process.url());

        // Four ways to stall, 2,000 each: nothing sent; part of a head; a head and part of
        // its body; one whole request and then nothing.
        let stalls: [&[u8]; 4] = [
            b"",
            b"POST /orders HTTP/1.1\r\nHost: test\r\nContent-Ty",
            b"POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"bookId\": \"book-1\",",
            b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n",
        ];
        let stalled: Vec<TcpStream> = futures::stream::iter(0..8000)
            .map(|index| {
                let address = address.as_str();
                async move {
                    let mut stream = connect(address).await;
                    let stall = stalls[index % stalls.len()];
                    if !stall.is_empty() {
                        // The server may have closed it already, to make room: that is the
                        // point.
                        let _ = stream.write_all(stall).await;
                    }
                    stream
                }
            })
            .buffer_unordered(CONNECTING_AT_ONCE)
            .collect()
            .await;
        assert_eq!(stalled.len(), 8000);
        tokio::time::sleep(Duration::from_millis(500)).await;

        let latencies = probe_health_five_times(&address, health).await;
        let name = binary.rsplit('/').next().unwrap_or(binary);
        report(
            &format!("{name}, 8,000 stalled connections"),
            &process,
            &latencies,
        );
        assert!(peak_rss(&process) < MAX_RSS_BYTES, "{name}");
        assert!(latencies[2] < MAX_HEALTH_LATENCY, "{name}: {latencies:?}");
    }
}

#[tokio::test]
async fn with_1000_orders_in_flight_against_a_hanging_storage_a_replica_stays_under_200_mib_and_answers_health_within_100_ms()
 {
    let _alone = MACHINE.write().await;
    raise_open_file_limit();
    let storage = HangingStorage::start().await;
    let process = start(
        ORDER_PROCESSOR,
        "json",
        &[("STORAGE_SERVICE_URL", storage.url.as_str())],
    );
    let address = address(process.url());
    let admitted = ServerLimits::default().max_requests_in_flight;

    // Refused at once: shed past the bound, or held back by the open circuit breaker once
    // the admitted ones have timed out against the storage.
    let shed = Arc::new(AtomicUsize::new(0));
    let order = post_order();
    let sent: Vec<TcpStream> = futures::stream::iter(0..1000)
        .map(|_| send(&address, &order))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect()
        .await;
    let mut orders = Vec::new();
    for mut stream in sent {
        let shed = shed.clone();
        orders.push(tokio::spawn(async move {
            if let Some(response) = read_response(&mut stream).await
                && response.status == 503
                && response.header("retry-after").is_some()
                && ["/problems/overloaded", "/problems/storage-unavailable"]
                    .contains(&response.problem(503)["type"].as_str().unwrap_or_default())
            {
                shed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    storage.wait_for_connections(admitted).await;

    let latencies = probe_health_five_times(&address, "/health/live").await;
    report(
        "1,000 orders in flight, storage hanging",
        &process,
        &latencies,
    );
    assert!(peak_rss(&process) < MAX_RSS_BYTES);
    assert!(latencies[2] < MAX_HEALTH_LATENCY, "{latencies:?}");
    // Every order past the bound was answered 503 with Retry-After.
    assert!(
        shed.load(Ordering::SeqCst) >= 1000 - admitted,
        "{} shed",
        shed.load(Ordering::SeqCst)
    );
    for order in orders {
        order.abort();
    }
}
