//! The binaries as an operator runs them: configuration errors, JSON logs, SIGTERM draining
//! in-flight requests before a clean exit, and the `storage-service` binary on PostgreSQL.

mod support {
    pub mod fs;
    pub mod port;
    pub mod postgres;
    pub mod process;
}

use std::{process::Command, time::Duration};

use futures::StreamExt;
use serde_json::Value;

use support::{port, postgres::PgServer, process::ChildService};

const BINARY: &str = env!("CARGO_BIN_EXE_order-processor");
const STORAGE_SERVICE: &str = env!("CARGO_BIN_EXE_storage-service");

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

#[test]
fn a_malformed_orders_per_user_per_minute_stops_startup_with_one_line_naming_the_variable() {
    for value in ["0", "-5", "ten", "2.5", ""] {
        let output = Command::new(BINARY)
            .env("ORDERS_PER_USER_PER_MINUTE", value)
            .env_remove("STORAGE_SERVICE_URL")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{value:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("invalid ORDERS_PER_USER_PER_MINUTE={value:?}")),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn orders_per_user_per_minute_limits_each_user_of_the_binary() {
    let running = ChildService::start(BINARY, &[("ORDERS_PER_USER_PER_MINUTE", "1")]);
    let client = reqwest::Client::new();
    let post = |user: &str| {
        client
            .post(format!("{}/orders", running.url()))
            .json(&serde_json::json!({ "bookId": "book-1", "quantity": 1, "userId": user }))
            .send()
    };

    assert_eq!(post("user-1").await.unwrap().status(), 201);
    let refused = post("user-1").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(post("user-2").await.unwrap().status(), 201);
}

/// Runs the storage service with `database_url` and answers its exit code and its stderr.
fn storage_service_failing_with(database_url: &str) -> (Option<i32>, String) {
    let output = Command::new(STORAGE_SERVICE)
        .env("DATABASE_URL", database_url)
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_malformed_database_url_stops_the_storage_service_with_one_line_naming_the_variable() {
    let (code, stderr) = storage_service_failing_with("postgres://shop:hunter2@db:port/orders");
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaks: {stderr}");
}

#[test]
fn an_unreachable_database_stops_the_storage_service_with_one_line_naming_the_variable() {
    let closed = port::free();
    let (code, stderr) = storage_service_failing_with(&format!(
        "postgres://shop:hunter2@127.0.0.1:{closed}/orders"
    ));
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{closed}/orders")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password leaks: {stderr}");
}

#[tokio::test]
async fn database_url_puts_the_storage_service_on_postgresql_with_the_demo_catalogue() {
    let database = PgServer::shared().create_database().await;
    let url = PgServer::shared().url(
        database
            .url
            .get_dbname()
            .expect("a test database has a name"),
    );
    let service = ChildService::start(
        STORAGE_SERVICE,
        &[("DATABASE_URL", &url), ("DATABASE_POOL_SIZE", "2")],
    );

    let books: Value = reqwest::get(format!("{}/books", service.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(service);
    assert_eq!(books["items"].as_array().map(Vec::len), Some(5), "{books}");
    let stored = tokio_postgres::connect(&url, tokio_postgres::NoTls).await;
    let (client, connection) = stored.unwrap();
    tokio::spawn(connection);
    let count: i64 = client
        .query_one("SELECT count(*) FROM books", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 5, "the catalogue is in PostgreSQL");
}

/// The Order Processor on its embedded store.
fn order_processor() -> ChildService {
    ChildService::start(BINARY, &[])
}

/// Reads log lines of `service` until one is `wanted`; every line it reads must be JSON.
fn wait_for_json(service: &ChildService, wanted: impl Fn(&Value) -> bool) -> Value {
    let line = service.wait_for(|line| {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        wanted(&value)
    });
    serde_json::from_str(&line).expect("a JSON line")
}

fn terminate(service: &ChildService) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(service.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn each_request_logs_one_json_line_with_method_route_status_latency_and_request_id() {
    let running = order_processor();

    let response = reqwest::Client::new()
        .get(format!("{}/orders/{}", running.url(), uuid::Uuid::new_v4()))
        .header("x-request-id", "log-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let line = wait_for_json(&running, |line| line["message"] == "request");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/orders/{id}");
    assert_eq!(line["status"], 404);
    assert!(line["latency"].is_string(), "{line}");
    assert_eq!(line["span"]["request_id"], "log-me-1", "{line}");
    // The request's span once, not again in a list of the spans in scope.
    assert!(line.get("spans").is_none(), "{line}");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_order_finish_then_exits_0() {
    let mut running = order_processor();

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
            .post(format!("{}/orders", running.url()))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(&running);
    wait_for_json(&running, |line| {
        line["message"] == "shutting down: draining in-flight requests"
    });
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
}
