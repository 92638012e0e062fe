//! Many parallel orders at a book with little stock: the stock never goes below zero, and
//! the confirmed quantities add up exactly to what was taken. Many parallel retries of one
//! purchase: one order.

use serde_json::Value;

use crate::helpers::{Backend, TestApp, on_both_backends, order, spawn_app};

const INITIAL_STOCK: i64 = 25;
const ORDERS: usize = 60;

async fn parallel_orders_never_oversell_and_confirmed_quantities_add_up(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("scarce", INITIAL_STOCK).await;

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..ORDERS {
        let client = app.client.clone();
        let url = format!("{}/orders", app.address);
        let quantity = (n % 3 + 1) as i64;
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&order("scarce", quantity, &format!("user-{n}")))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, quantity, response.json::<Value>().await.unwrap())
        });
    }
    let mut confirmed = 0;
    let mut rejected_ids = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (status, quantity, body) = result.unwrap();
        match status {
            201 => confirmed += quantity,
            409 => rejected_ids.push(body["orderId"].as_str().unwrap().to_owned()),
            other => panic!("unexpected status {other}: {body}"),
        }
    }

    let remaining = app.stock_of("scarce").await;
    assert!(remaining >= 0);
    assert_eq!(
        confirmed + remaining,
        INITIAL_STOCK,
        "confirmed {confirmed}, remaining {remaining}"
    );
    assert!(!rejected_ids.is_empty(), "the stock was meant to run out");
    // With a bit of stock left, only orders larger than it could be refused.
    assert!(
        remaining < 3,
        "{remaining} copies left while orders were refused"
    );
    for id in rejected_ids {
        let recorded: Value = app
            .get(&format!("/orders/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(recorded["status"], "rejected");
    }
}

/// Sends `body` under `key` twelve times at once; answers each status and body.
async fn twelve_at_once(app: &TestApp, key: &'static str, body: Value) -> Vec<(u16, Value)> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let request = app
            .client
            .post(format!("{}/orders", app.address))
            .header("Idempotency-Key", key)
            .json(&body);
        tasks.spawn(async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    tasks.join_all().await
}

async fn parallel_retries_with_one_idempotency_key_place_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 10).await;

    let answers = twelve_at_once(&app, "one-purchase", order("book-1", 3, "user-1")).await;

    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["id"], answers[0].1["id"]);
        assert_eq!(body["status"], "confirmed");
    }
    assert_eq!(app.stock_of("book-1").await, 7, "the stock was taken once");
    let page: Value = app.get("/orders/user/user-1").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

async fn parallel_retries_of_an_order_refused_for_stock_all_answer_409_naming_one_order(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 1).await;

    let answers = twelve_at_once(&app, "too-many", order("book-1", 2, "user-1")).await;

    for (status, body) in &answers {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["type"], "/problems/out-of-stock");
        assert_eq!(body["orderId"], answers[0].1["orderId"]);
    }
    let id = answers[0].1["orderId"].as_str().unwrap();
    let recorded: Value = app
        .get(&format!("/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["status"], "rejected");
    assert_eq!(app.stock_of("book-1").await, 1);
}

async fn two_users_with_the_same_key_place_two_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 10).await;

    let mut ids = Vec::new();
    for user in ["alice", "bob"] {
        let response = app
            .post_order_with_key(&order("book-1", 1, user), "purchase-0001")
            .await;
        assert_eq!(response.status().as_u16(), 201);
        assert!(response.headers().get("idempotent-replayed").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["userId"], user);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(app.stock_of("book-1").await, 8);
}

async fn a_replayed_answer_is_marked_and_a_first_answer_is_not(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 1).await;

    for (quantity, key, status) in [(1, "fits", 201), (5, "too-many", 409)] {
        let body = order("book-1", quantity, "user-1");
        let first = app.post_order_with_key(&body, key).await;
        assert_eq!(first.status().as_u16(), status);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.unwrap();
        let again = app.post_order_with_key(&body, key).await;
        assert_eq!(again.status().as_u16(), status);
        assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again, first, "the replay repeats the outcome");
    }
    // Without a key nothing is ever replayed.
    let plain = app.post_order(&order("book-1", 5, "user-1")).await;
    assert!(plain.headers().get("idempotent-replayed").is_none());
}

on_both_backends!(
    parallel_orders_never_oversell_and_confirmed_quantities_add_up,
    parallel_retries_with_one_idempotency_key_place_one_order,
    parallel_retries_of_an_order_refused_for_stock_all_answer_409_naming_one_order,
    two_users_with_the_same_key_place_two_orders,
    a_replayed_answer_is_marked_and_a_first_answer_is_not,
);
