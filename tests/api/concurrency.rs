//! Many parallel orders at a book with little stock: the stock never goes below zero, and
//! the confirmed quantities add up exactly to what was taken. Many parallel retries of one
//! purchase: one order.

use serde_json::Value;

use crate::helpers::{Backend, on_both_backends, order, spawn_app};

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

async fn parallel_retries_with_one_idempotency_key_place_one_order(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 10).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let client = app.client.clone();
        let url = format!("{}/orders", app.address);
        tasks.spawn(async move {
            let response = client
                .post(url)
                .header("Idempotency-Key", "one-purchase")
                .json(&order("book-1", 3, "user-1"))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    let answers = tasks.join_all().await;

    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["id"], answers[0].1["id"]);
        assert_eq!(body["status"], "confirmed");
    }
    assert_eq!(app.stock_of("book-1").await, 7, "the stock was taken once");
    let page: Value = app.get("/orders/user/user-1").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

on_both_backends!(
    parallel_orders_never_oversell_and_confirmed_quantities_add_up,
    parallel_retries_with_one_idempotency_key_place_one_order,
);
