//! Storage failures: the caller gets 503 with `Retry-After`, no order is lost or duplicated,
//! and a retry with the same idempotency key resumes the order where it stopped.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{Method, StatusCode},
    web::Data,
};
use serde_json::Value;

use crate::{
    helpers::{Backend, TestApp, order, spawn_app, spawn_order_processor},
    support::{net::LOOPBACK, port, problem::problem},
};
use order_processor::{
    http::server::{Running, Server},
    recovery::RecoveryConfig,
    startup::{Application, Options},
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        resilience::RetryPolicy,
    },
};

/// A Storage Service address where nothing listens.
fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", port::free())
}

/// Serves `app` on a loopback port until the handle is dropped.
async fn serve(app: impl poem::Endpoint + 'static) -> Running {
    Server::bind(LOOPBACK).await.unwrap().spawn(app)
}

async fn order_processor_with_storage_at(url: &str) -> Running {
    let storage = HttpStorage::new(url, HttpStorageConfig::default()).unwrap();
    spawn_order_processor(storage).await
}

async fn assert_unavailable(response: reqwest::Response) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        retry_after.parse::<u32>().is_ok_and(|seconds| seconds >= 1),
        "{retry_after}"
    );
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "/problems/storage-unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "internal details leak: {body}"
    );
}

#[tokio::test]
async fn an_unreachable_storage_service_gives_503_with_retry_after() {
    let order_processor = order_processor_with_storage_at(&closed_port_url()).await;
    let address = order_processor.url();
    let client = reqwest::Client::new();

    let requests = [
        client
            .post(format!("{address}/orders"))
            .json(&order("b", 1, "u")),
        client.get(format!("{address}/orders/{}", uuid::Uuid::new_v4())),
        client.get(format!("{address}/orders/user/u")),
        client.get(format!("{address}/health/ready")),
    ];
    for request in requests {
        assert_unavailable(request.send().await.unwrap()).await;
    }
}

#[handler]
async fn always_500(Data(calls): Data<&Arc<std::sync::atomic::AtomicUsize>>) -> StatusCode {
    calls.fetch_add(1, Ordering::SeqCst);
    StatusCode::INTERNAL_SERVER_ERROR
}

#[tokio::test]
async fn a_storage_service_answering_5xx_gives_503_after_bounded_retries() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let storage = serve(Route::new().nest("/", always_500).data(calls.clone())).await;
    let order_processor = order_processor_with_storage_at(&storage.url()).await;
    let address = order_processor.url();

    let response = reqwest::Client::new()
        .post(format!("{address}/orders"))
        .json(&order("b", 1, "u"))
        .send()
        .await
        .unwrap();

    assert_unavailable(response).await;
    let calls = calls.load(Ordering::SeqCst);
    assert!(
        (2..=5).contains(&calls),
        "{calls} calls: retried, but a bounded number of times"
    );
}

/// Forwards to the reference Storage Service, except the `PUT`s whose path ends with the
/// suffix `failing` holds (`/status` for status changes, `/stock` for takes): those answer
/// 503, as a Storage Service that fails mid-flow.
#[derive(Clone)]
struct FaultProxy {
    upstream: String,
    client: reqwest::Client,
    fault: Arc<Mutex<Fault>>,
}

#[derive(Clone, Copy)]
enum Fault {
    None,
    /// The `PUT`s whose path ends with this answer 503.
    FailPuts(&'static str),
    /// Every request is held without an answer, as by a storage that accepts connections
    /// and never answers.
    Hang,
}

impl FaultProxy {
    /// A proxy in front of `app`'s Storage Service with `fault`.
    fn new(app: &TestApp, fault: Fault) -> Self {
        Self {
            upstream: app.storage_service.as_ref().unwrap().url(),
            client: reqwest::Client::new(),
            fault: Arc::new(Mutex::new(fault)),
        }
    }

    /// A proxy in front of `app`'s Storage Service that fails the `PUT`s ending with `suffix`.
    fn failing(app: &TestApp, suffix: &'static str) -> Self {
        Self::new(app, Fault::FailPuts(suffix))
    }

    fn heal(&self) {
        *self.fault.lock().unwrap() = Fault::None;
    }
}

#[handler]
async fn forward(request: &Request, body: Body, Data(proxy): Data<&FaultProxy>) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let fault = *proxy.fault.lock().unwrap();
    match fault {
        Fault::FailPuts(suffix) if request.method() == Method::PUT && path.ends_with(suffix) => {
            return StatusCode::SERVICE_UNAVAILABLE.into();
        }
        Fault::Hang => std::future::pending::<()>().await,
        _ => {}
    }
    let upstream = proxy
        .client
        .request(
            request.method().clone(),
            format!("{}{path}", proxy.upstream),
        )
        .header("content-type", "application/json")
        .body(body.into_vec().await.unwrap())
        .send()
        .await
        .unwrap();
    Response::builder()
        .status(upstream.status())
        .content_type("application/json")
        .body(upstream.bytes().await.unwrap())
}

#[tokio::test]
async fn an_order_interrupted_by_the_storage_stays_pending_and_a_retry_with_its_key_confirms_it() {
    let app = spawn_app(Backend::Remote).await;
    app.add_book("book-1", 5).await;
    let proxy = FaultProxy::failing(&app, "/status");
    let proxy_server = serve(Route::new().nest("/", forward).data(proxy.clone())).await;
    let order_processor = order_processor_with_storage_at(&proxy_server.url()).await;
    let address = order_processor.url();
    let client = reqwest::Client::new();
    let purchase = || {
        client
            .post(format!("{address}/orders"))
            .header("Idempotency-Key", "interrupted-1")
            .json(&order("book-1", 2, "user-1"))
            .send()
    };

    assert_unavailable(purchase().await.unwrap()).await;
    let page: Value = app.get("/orders/user/user-1").await.json().await.unwrap();
    assert_eq!(page["items"][0]["status"], "pending", "{page}");
    assert_eq!(
        app.stock_of("book-1").await,
        3,
        "the pending order holds its stock"
    );

    proxy.heal();
    let retried = purchase().await.unwrap();

    assert_eq!(retried.status().as_u16(), 201);
    let confirmed: Value = retried.json().await.unwrap();
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["id"], page["items"][0]["id"]);
    assert_eq!(app.stock_of("book-1").await, 3, "the stock was taken once");
    let page: Value = app.get("/orders/user/user-1").await.json().await.unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "no second order"
    );
}

/// Recovery that acts within a test's patience: orders pending for 300 ms are recovered,
/// with a scan every 100 ms.
const QUICK_RECOVERY: RecoveryConfig = RecoveryConfig {
    after: Duration::from_millis(300),
    period: Duration::from_millis(100),
};

async fn order_processor_with_recovery(url: &str, recovery: RecoveryConfig) -> Running {
    let storage = HttpStorage::new(url, HttpStorageConfig::default()).unwrap();
    Application::build_with(
        storage,
        LOOPBACK,
        Options {
            recovery,
            ..Options::default()
        },
    )
    .await
    .unwrap()
    .spawn()
}

/// Reads the order `id` until its status is no longer `pending`, for at most 10 s.
async fn ended(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let order: Value = app
            .get(&format!("/orders/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if order["status"] != "pending" {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {id} is still pending: {order}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_out_of_stock_order_interrupted_before_it_was_rejected_answers_409_on_retry() {
    let app = spawn_app(Backend::Remote).await;
    app.add_book("book-1", 1).await;
    let proxy = FaultProxy::failing(&app, "/status");
    let proxy_server = serve(Route::new().nest("/", forward).data(proxy.clone())).await;
    // Recovery is kept out of the way: the retry alone must find the outcome.
    let quiet = RecoveryConfig {
        after: Duration::from_secs(3600),
        period: Duration::from_secs(3600),
    };
    let order_processor = order_processor_with_recovery(&proxy_server.url(), quiet).await;
    let address = order_processor.url();
    let client = reqwest::Client::new();
    let purchase = || {
        client
            .post(format!("{address}/orders"))
            .header("Idempotency-Key", "short-1")
            .json(&order("book-1", 2, "user-1"))
            .send()
    };

    let first = problem(purchase().await.unwrap(), 503).await;
    let order_id = first["orderId"]
        .as_str()
        .expect("the 503 names the order")
        .to_owned();
    proxy.heal();
    for _ in 0..3 {
        let retried = purchase().await.unwrap();
        assert_eq!(
            retried.headers().get("idempotent-replayed").unwrap(),
            "true"
        );
        let body = problem(retried, 409).await;
        assert_eq!(body["type"], "/problems/out-of-stock");
        assert_eq!(body["orderId"], order_id.as_str());
    }
    let recorded: Value = app
        .get(&format!("/orders/{order_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["status"], "rejected", "{recorded}");
    assert_eq!(app.stock_of("book-1").await, 1, "no stock moved");
}

#[tokio::test]
async fn recovery_confirms_an_interrupted_order_that_holds_its_stock_and_a_retry_answers_the_same()
{
    let app = spawn_app(Backend::Remote).await;
    app.add_book("book-1", 5).await;
    let proxy = FaultProxy::failing(&app, "/status");
    let proxy_server = serve(Route::new().nest("/", forward).data(proxy.clone())).await;
    let order_processor = order_processor_with_recovery(&proxy_server.url(), QUICK_RECOVERY).await;
    let address = order_processor.url();
    let client = reqwest::Client::new();
    let purchase = |key: &'static str| {
        client
            .post(format!("{address}/orders"))
            .header("Idempotency-Key", key)
            .json(&order("book-1", 2, "user-1"))
            .send()
    };

    let first = problem(purchase("held-1").await.unwrap(), 503).await;
    let order_id = first["orderId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.stock_of("book-1").await,
        3,
        "the pending order holds its stock"
    );
    proxy.heal();

    let recovered = ended(&app, &order_id).await;
    assert_eq!(recovered["status"], "confirmed", "{recovered}");
    assert_eq!(app.stock_of("book-1").await, 3, "taken once");
    let retried = purchase("held-1").await.unwrap();
    assert_eq!(retried.status().as_u16(), 201);
    assert_eq!(
        retried.headers().get("idempotent-replayed").unwrap(),
        "true"
    );
    let body: Value = retried.json().await.unwrap();
    assert_eq!(body["id"], order_id.as_str());
    assert_eq!(body["status"], "confirmed");
}

#[tokio::test]
async fn recovery_finishes_orders_whose_stock_was_never_taken_by_taking_it_or_rejecting_them() {
    let app = spawn_app(Backend::Remote).await;
    app.add_book("plenty", 5).await;
    app.add_book("none", 0).await;
    let proxy = FaultProxy::failing(&app, "/stock");
    let proxy_server = serve(Route::new().nest("/", forward).data(proxy.clone())).await;
    let order_processor = order_processor_with_recovery(&proxy_server.url(), QUICK_RECOVERY).await;
    let address = order_processor.url();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for book in ["plenty", "none"] {
        let response = client
            .post(format!("{address}/orders"))
            .json(&order(book, 1, "user-1"))
            .send()
            .await
            .unwrap();
        let body = problem(response, 503).await;
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(app.stock_of("plenty").await, 5, "nothing taken yet");
    proxy.heal();

    let confirmed = ended(&app, &ids[0]).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(app.stock_of("plenty").await, 4);
    let rejected = ended(&app, &ids[1]).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert!(
        rejected["reason"]
            .as_str()
            .is_some_and(|r| r.contains("none")),
        "{rejected}"
    );
}

#[tokio::test]
async fn the_embedded_store_recovers_its_pending_orders_too() {
    use order_processor::domain::{
        model::{BookId, NewOrder, OrderId, Quantity, UserId},
        storage::OrderStore,
    };
    let app = spawn_app(Backend::Embedded).await;
    app.add_book("book-1", 2).await;
    // As a process killed after recording its order would leave it.
    let stuck = app
        .store
        .create_order(&NewOrder {
            id: OrderId::generate(),
            book_id: BookId::parse("book-1").unwrap(),
            user_id: UserId::parse("user-1").unwrap(),
            quantity: Quantity::new(2).unwrap(),
        })
        .await
        .unwrap()
        .order;
    let _recovering = Application::build_with(
        app.store.clone(),
        LOOPBACK,
        Options {
            recovery: QUICK_RECOVERY,
            ..Options::default()
        },
    )
    .await
    .unwrap()
    .spawn();

    let recovered = ended(&app, &stuck.id.to_string()).await;
    assert_eq!(recovered["status"], "confirmed", "{recovered}");
    assert_eq!(app.stock_of("book-1").await, 0);
}

#[tokio::test]
async fn a_storage_that_keeps_failing_trips_the_breaker_so_orders_answer_503_at_once_until_a_probe_succeeds()
 {
    let app = spawn_app(Backend::Remote).await;
    app.add_book("book-1", 5).await;
    let proxy = FaultProxy::new(&app, Fault::Hang);
    let proxy_server = serve(Route::new().nest("/", forward).data(proxy.clone())).await;
    let defaults = HttpStorageConfig::default();
    let config = HttpStorageConfig {
        retry: RetryPolicy {
            attempts: 2,
            attempt_timeout: Duration::from_millis(200),
            ..defaults.retry
        },
        breaker_threshold: 4,
        breaker_cooldown: Duration::from_millis(500),
        ..defaults
    };
    let storage = HttpStorage::new(&proxy_server.url(), config).unwrap();
    let order_processor = spawn_order_processor(storage).await;
    let address = order_processor.url();
    let client = reqwest::Client::new();
    let purchase = || {
        client
            .post(format!("{address}/orders"))
            .header("Idempotency-Key", "breaker-1")
            .json(&order("book-1", 1, "user-1"))
            .send()
    };

    // Two orders, two timed-out attempts each: four failures in a row open the breaker.
    for _ in 0..2 {
        assert_unavailable(purchase().await.unwrap()).await;
    }
    let started = std::time::Instant::now();
    assert_unavailable(purchase().await.unwrap()).await;
    let held_back = started.elapsed();
    assert!(
        held_back < Duration::from_millis(150),
        "answered in {held_back:?}, not at once: the storage was called"
    );
    let ready = client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_unavailable(ready).await;

    proxy.heal();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status().as_u16(),
        200,
        "the probe succeeded and closed the breaker"
    );
    assert_eq!(purchase().await.unwrap().status().as_u16(), 201);
}
