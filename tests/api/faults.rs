//! Storage failures: the caller gets 503 with `Retry-After`, no order is lost or duplicated,
//! and a retry with the same idempotency key resumes the order where it stopped.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use poem::{
    Body, EndpointExt, Request, Response, Route, handler,
    http::{Method, StatusCode},
    web::Data,
};
use serde_json::Value;

use crate::helpers::{Backend, LOOPBACK, order, problem, spawn_app, spawn_order_processor};
use order_processor::{
    http::server::{Running, Server},
    storage::http::{HttpStorage, HttpStorageConfig},
};

/// A Storage Service address where nothing listens.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
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
    let order_processor = order_processor_with_storage_at(&closed_port_url().await).await;
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

/// Forwards to the reference Storage Service, except status changes while `fail_status`
/// is set: those answer 503, as a Storage Service that fails mid-flow.
#[derive(Clone)]
struct FaultProxy {
    upstream: String,
    client: reqwest::Client,
    fail_status: Arc<AtomicBool>,
}

#[handler]
async fn forward(request: &Request, body: Body, Data(proxy): Data<&FaultProxy>) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if proxy.fail_status.load(Ordering::SeqCst)
        && request.method() == Method::PUT
        && path.ends_with("/status")
    {
        return StatusCode::SERVICE_UNAVAILABLE.into();
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
    let proxy = FaultProxy {
        upstream: app.storage_service.as_ref().unwrap().url(),
        client: reqwest::Client::new(),
        fail_status: Arc::new(AtomicBool::new(true)),
    };
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

    proxy.fail_status.store(false, Ordering::SeqCst);
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
