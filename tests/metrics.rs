//! `GET /metrics` of both services as Prometheus reads it: an Order Processor in this process
//! in front of the `storage-service` binary, traffic through it, and both scrapes parsed with
//! a Prometheus text parser.
//!
//! The metrics recorder is global to a process, and every test here shares this one's: each
//! test compares a scrape after its traffic with one before it, on labels that only its own
//! traffic produces. The Storage Service runs as its own process, as deployed, so its scrape
//! holds its own metrics only.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use order_processor::{
    config,
    http::limits::ServerLimits,
    startup::{Application, Options},
    storage::http::{HttpStorage, HttpStorageConfig},
};
use prom_text_format_parser::{Scrape, Type, ValueType};
use serde_json::json;

const STORAGE_SERVICE: &str = env!("CARGO_BIN_EXE_storage-service");
const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("metrics-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }

    /// A file in the directory holding `text`.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `storage-service` binary on SQLite with the demo catalogue (`book-1` has 10 copies,
/// `book-5` none), killed when dropped.
struct StorageService {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl StorageService {
    fn start(token_file: Option<&PathBuf>) -> Self {
        let dir = TempDir::new();
        let mut command = Command::new(STORAGE_SERVICE);
        command
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .env("DATA_DIR", &dir.0)
            .env("LOG_FORMAT", "json")
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("METRICS_TOKEN_FILE")
            .stdout(Stdio::piped());
        if let Some(path) = token_file {
            command.env("METRICS_TOKEN_FILE", path);
        }
        let mut child = command.spawn().expect("start the storage service");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr: SocketAddr = lines
            .by_ref()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .find(|line| line["message"] == "storage service listening")
            .and_then(|line| line["addr"].as_str()?.parse().ok())
            .expect("the storage service listens");
        // Its access log keeps coming: read it, so that a full pipe never blocks it.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            url: format!("http://127.0.0.1:{}", addr.port()),
            _dir: dir,
        }
    }
}

impl Drop for StorageService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scrape, parsed.
struct Metrics(Scrape);

impl Metrics {
    /// The samples of `name` whose labels include `labels`, with their values: for a
    /// histogram, its count of observations.
    fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (HashMap<&'a str, &'a str>, f64)> + 'a {
        self.0
            .metrics
            .iter()
            .filter(move |metric| metric.name == name)
            .flat_map(|metric| {
                let wanted = match metric.kind {
                    Type::Histogram | Type::Summary => ValueType::Count,
                    _ => ValueType::Sample,
                };
                metric
                    .samples
                    .iter()
                    .filter(move |sample| sample.value.value_type == wanted)
            })
            .map(|sample| {
                let found: HashMap<&str, &str> = sample
                    .labels
                    .iter()
                    .map(|label| (label.key.as_str(), label.value.as_str()))
                    .collect();
                (found, sample.value.value.as_f64())
            })
            .filter(move |(found, _)| {
                labels
                    .iter()
                    .all(|(key, value)| found.get(key) == Some(value))
            })
    }

    /// The sum of the values of `name` whose labels include `labels`; 0 when there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(name, labels).map(|(_, value)| value).sum()
    }

    /// The values of the label `key` among the samples of `name`.
    fn label_values(&self, name: &str, key: &str) -> Vec<String> {
        self.samples(name, &[])
            .filter_map(|(found, _)| found.get(key).map(|value| (*value).to_owned()))
            .collect()
    }
}

/// How much each value grew between two scrapes.
struct Delta<'a> {
    before: &'a Metrics,
    after: &'a Metrics,
}

impl Delta<'_> {
    fn of(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.after.value(name, labels) - self.before.value(name, labels)
    }
}

async fn get_metrics(base: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("send GET /metrics")
}

/// `GET /metrics`, which must answer the Prometheus text format, parsed.
async fn scrape(base: &str, token: Option<&str>) -> Metrics {
    let response = get_metrics(base, token).await;
    assert_eq!(response.status(), 200, "GET {base}/metrics");
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    Metrics(Scrape::parse(&text).unwrap_or_else(|err| panic!("{err:?}: {text}")))
}

async fn order_processor(storage_url: &str) -> Application {
    let storage =
        HttpStorage::new(storage_url, HttpStorageConfig::default()).expect("a storage client");
    Application::build(storage, LOOPBACK)
        .await
        .expect("bind the order processor")
}

#[tokio::test]
async fn requests_orders_and_storage_calls_are_counted_by_route_template_status_and_outcome() {
    let storage = StorageService::start(None);
    let order_processor = order_processor(&storage.url).await.spawn();
    let base = order_processor.url();
    let client = reqwest::Client::new();
    let before = scrape(&base, None).await;
    let storage_before = scrape(&storage.url, None).await;

    let user = format!("metrics-{}", uuid::Uuid::new_v4());
    let order = |book: &str| json!({ "bookId": book, "quantity": 1, "userId": user });
    let post = |body: serde_json::Value, key: Option<&str>| {
        let mut request = client.post(format!("{base}/orders")).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(order("book-1"), None).await, 201);
    assert_eq!(post(order("book-1"), None).await, 201);
    assert_eq!(post(order("book-1"), Some("metrics-key")).await, 201);
    assert_eq!(
        post(order("book-1"), Some("metrics-key")).await,
        201,
        "replay"
    );
    assert_eq!(post(order("book-5"), None).await, 409, "out of stock");
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    assert_eq!(get("/no/such/path").await.unwrap().status(), 404);
    assert_eq!(get("/orders/not-a-uuid").await.unwrap().status(), 400);

    let posted = client.post(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(posted.headers()["allow"], "GET, HEAD");

    let after = scrape(&base, None).await;
    let delta = Delta {
        before: &before,
        after: &after,
    };
    for (route, method, status, count) in [
        ("/orders", "POST", "201", 4.0),
        ("/orders", "POST", "409", 1.0),
        ("unmatched", "GET", "404", 1.0),
        ("/orders/{id}", "GET", "400", 1.0),
        // The scrapes themselves are not counted.
        ("unmatched", "GET", "200", 0.0),
    ] {
        let labels = [("route", route), ("method", method), ("status", status)];
        assert_eq!(
            delta.of("http_requests_total", &labels),
            count,
            "{labels:?}"
        );
        assert_eq!(
            delta.of("http_request_duration_seconds", &labels),
            count,
            "histogram {labels:?}"
        );
    }
    let routes = after.label_values("http_requests_total", "route");
    assert!(
        routes.iter().all(|route| route == "unmatched"
            || route.starts_with("/orders")
            || route.starts_with("/health")),
        "routes are templates: {routes:?}"
    );
    assert!(
        routes.iter().any(|route| route == "/orders/{id}"),
        "{routes:?}"
    );
    for (outcome, replayed, count) in [
        ("confirmed", "false", 3.0),
        ("confirmed", "true", 1.0),
        ("rejected", "false", 1.0),
        ("failed", "false", 0.0),
    ] {
        let labels = [("outcome", outcome), ("replayed", replayed)];
        assert_eq!(delta.of("orders_total", &labels), count, "{labels:?}");
    }
    for (operation, outcome, count) in [
        ("create_order", "ok", 5.0),
        ("take_stock", "ok", 3.0),
        ("take_stock", "out_of_stock", 1.0),
        ("update_order_status", "ok", 4.0),
        ("get_order", "not_found", 0.0),
    ] {
        let labels = [("operation", operation), ("outcome", outcome)];
        assert_eq!(
            delta.of("storage_calls_total", &labels),
            count,
            "{labels:?}"
        );
        assert_eq!(
            delta.of("storage_call_duration_seconds", &labels),
            count,
            "histogram {labels:?}"
        );
    }

    // The Storage Service counts the same calls under its own route templates.
    let storage_after = scrape(&storage.url, None).await;
    let storage_delta = Delta {
        before: &storage_before,
        after: &storage_after,
    };
    for (route, status, count) in [
        // Four orders created; the replay finds the keyed one.
        ("/orders", "201", 4.0),
        ("/orders", "200", 1.0),
        ("/orders/{id}/stock", "200", 3.0),
        ("/orders/{id}/stock", "409", 1.0),
    ] {
        let labels = [("route", route), ("status", status)];
        assert_eq!(
            storage_delta.of("http_requests_total", &labels),
            count,
            "storage service {labels:?}"
        );
    }
}

#[tokio::test]
async fn with_a_token_file_metrics_answer_only_the_bearer_of_the_token() {
    let dir = TempDir::new();
    let token_file = dir.file("token", "s3cret-token\n");
    let token_path = token_file.to_str().unwrap().to_owned();
    let token =
        config::metrics_token(|name| (name == "METRICS_TOKEN_FILE").then(|| token_path.clone()))
            .expect("read the token file");
    let storage = StorageService::start(Some(&token_file));
    let order_processor = order_processor(&storage.url)
        .await
        .with_metrics_token(token)
        .spawn();

    for base in [order_processor.url(), storage.url.clone()] {
        let health = reqwest::get(format!("{base}/health")).await.unwrap();
        assert_eq!(health.status(), 200);
        for presented in [None, Some("wrong-token"), Some("s3cret-token-and-more")] {
            let response = get_metrics(&base, presented).await;
            assert_eq!(response.status(), 401, "{base} with {presented:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let problem: serde_json::Value = response.json().await.unwrap();
            assert_eq!(problem["status"], 401, "{problem}");
            assert_eq!(problem["type"], "/problems/unauthorized", "{problem}");
        }
        let metrics = scrape(&base, Some("s3cret-token")).await;
        let health = [("route", "/health"), ("method", "GET"), ("status", "200")];
        assert!(
            metrics.value("http_requests_total", &health) >= 1.0,
            "{base}"
        );
    }
}

#[tokio::test]
async fn metrics_are_answered_while_the_service_sheds_load_and_the_refusals_are_counted() {
    // A storage that accepts connections and never answers holds the one admitted request.
    let silent = tokio::net::TcpListener::bind(LOOPBACK).await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let (reached, mut storage_reached) = tokio::sync::mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            open.push(connection);
            let _ = reached.send(());
        }
    });
    let order_processor = order_processor(&silent_url)
        .await
        .with_limits(ServerLimits {
            max_requests_in_flight: 1,
            // Far beyond the test: the first order holds its place throughout.
            request_deadline: Duration::from_secs(60),
            ..ServerLimits::default()
        })
        .spawn();
    let base = order_processor.url();
    let before = scrape(&base, None).await;
    let order = json!({ "bookId": "book-1", "quantity": 1, "userId": "metrics-shedding" });
    let first = tokio::spawn({
        let request = reqwest::Client::new()
            .post(format!("{base}/orders"))
            .json(&order);
        async move { request.send().await }
    });
    tokio::time::timeout(Duration::from_secs(10), storage_reached.recv())
        .await
        .expect("the first order reaches the storage");

    let shed = reqwest::Client::new()
        .post(format!("{base}/orders"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(shed.status(), 503);
    let during = scrape(&base, None).await;
    let delta = Delta {
        before: &before,
        after: &during,
    };
    assert_eq!(
        delta.of("http_requests_refused_total", &[("reason", "overloaded")]),
        1.0
    );
    assert_eq!(
        delta.of(
            "http_requests_total",
            &[("route", "/orders"), ("method", "POST"), ("status", "503")]
        ),
        1.0
    );
    first.abort();
    held.abort();
}

#[tokio::test]
async fn an_order_past_the_per_user_limit_is_counted_as_refused_for_its_rate() {
    let storage = StorageService::start(None);
    let http = HttpStorage::new(&storage.url, HttpStorageConfig::default()).unwrap();
    let options = Options {
        orders_per_user_per_minute: NonZeroU32::new(1),
        ..Options::default()
    };
    let order_processor = Application::build_with(http, LOOPBACK, options)
        .await
        .expect("bind the order processor")
        .spawn();
    let base = order_processor.url();
    let before = scrape(&base, None).await;

    // An unknown book, so that the order the limit admits is answered 422, a status the other
    // tests' traffic does not give: they share this process's recorder.
    let order = json!({ "bookId": "no-such-book", "quantity": 1, "userId": "metrics-rate" });
    for expected in [422, 429] {
        let response = reqwest::Client::new()
            .post(format!("{base}/orders"))
            .json(&order)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }

    let after = scrape(&base, None).await;
    let delta = Delta {
        before: &before,
        after: &after,
    };
    assert_eq!(
        delta.of("http_requests_refused_total", &[("reason", "rate")]),
        1.0
    );
    assert_eq!(
        delta.of(
            "http_requests_total",
            &[("route", "/orders"), ("method", "POST"), ("status", "429")]
        ),
        1.0
    );
}
