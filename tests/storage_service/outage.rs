//! A PostgreSQL server lost under a running Storage Service: every operation answers `503`
//! with `Retry-After` (a client retries it), health says the database is away, and the
//! service serves again as soon as the server is back, without a restart.

use std::{sync::Arc, time::Duration};

use order_processor::{
    http::storage_api::spawn_reference_storage, storage::postgres::PostgresStore,
};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{net::LOOPBACK, postgres::PgServer};

/// Every operation of the contract, with a body it would accept, in an order in which each
/// succeeds on a fresh database.
fn operations(order: Uuid) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::PUT,
            "/books/book-1".to_owned(),
            Some(
                json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 5}),
            ),
        ),
        (
            Method::PUT,
            "/books/book-1/quantity".to_owned(),
            Some(json!({"quantity": 5})),
        ),
        (Method::GET, "/books".to_owned(), None),
        (Method::GET, "/books/book-1".to_owned(), None),
        (Method::GET, "/orders?userId=user-1".to_owned(), None),
        (
            Method::POST,
            "/orders".to_owned(),
            Some(json!({
                "orderId": order, "bookId": "book-1", "quantity": 1,
                "userId": "user-1", "status": "pending"
            })),
        ),
        (Method::GET, format!("/orders/{order}"), None),
        (Method::PUT, format!("/orders/{order}/stock"), None),
        (Method::DELETE, format!("/orders/{order}/stock"), None),
        (
            Method::PUT,
            format!("/orders/{order}/status"),
            Some(json!({"from": "pending", "to": "rejected"})),
        ),
    ]
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    (method, path, body): &(Method, String, Option<Value>),
) -> reqwest::Response {
    let mut request = http.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("the service answers")
}

#[tokio::test]
async fn a_lost_database_answers_503_with_retry_after_on_every_operation_until_it_returns() {
    let server = PgServer::start();
    let config = server.create_database().await;
    let store = PostgresStore::connect(&config).await.expect("connect");
    let service = spawn_reference_storage(Arc::new(store), LOOPBACK)
        .await
        .expect("start the Storage Service");
    let base = service.url();
    let http = reqwest::Client::new();
    let order = Uuid::new_v4();
    let operations = operations(order);

    server.stop();
    for operation in &operations {
        let response = call(&http, &base, operation).await;
        let retry_after = response.headers().get("retry-after").cloned();
        assert_eq!(response.status().as_u16(), 503, "{operation:?}");
        assert!(retry_after.is_some(), "{operation:?} has no Retry-After");
        let problem: Value = response.json().await.expect("a Problem");
        assert_eq!(
            problem["type"], "/problems/storage-unavailable",
            "{problem}"
        );
    }
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 503);

    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = http.get(format!("{base}/health")).send().await.unwrap();
        if health.status().is_success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for operation in &operations {
        let response = call(&http, &base, operation).await;
        assert!(
            response.status().is_success(),
            "{operation:?} answered {}",
            response.status()
        );
    }
}
