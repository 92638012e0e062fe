//! Cancelling an order: a confirmed order becomes `cancelled` and gives its stock back,
//! exactly once, however often and however concurrently it is cancelled; only a confirmed
//! order can be cancelled.

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, on_both_backends, order, spawn_app},
    support::problem::problem,
};

async fn cancel(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/orders/{id}/cancel", app.address))
        .json(&body)
        .send()
        .await
        .expect("send POST /orders/{id}/cancel")
}

async fn confirmed_order(app: &TestApp, quantity: i64) -> String {
    let response = app.post_order(&order("book-1", quantity, "user-1")).await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn a_cancelled_order_gives_its_stock_back_once_however_often_it_is_cancelled(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 10).await;
    let id = confirmed_order(&app, 3).await;
    assert_eq!(app.stock_of("book-1").await, 7);

    let first = cancel(
        &app,
        &id,
        json!({ "reason": "the buyer changed their mind" }),
    )
    .await;
    assert_eq!(first.status().as_u16(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "cancelled");
    assert_eq!(first["reason"], "the buyer changed their mind");
    assert_eq!(app.stock_of("book-1").await, 10);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (
            app.client.clone(),
            format!("{}/orders/{id}/cancel", app.address),
        );
        tasks.spawn(async move {
            let response = client.post(url).json(&json!({})).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    for (status, body) in tasks.join_all().await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, first, "every cancel answers the same cancelled order");
    }
    assert_eq!(app.stock_of("book-1").await, 10, "the stock came back once");
    let read: Value = app
        .get(&format!("/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, first);
}

async fn concurrent_first_cancels_give_the_stock_back_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 10).await;
    let id = confirmed_order(&app, 4).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (
            app.client.clone(),
            format!("{}/orders/{id}/cancel", app.address),
        );
        tasks.spawn(async move {
            client
                .post(url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    for status in tasks.join_all().await {
        assert_eq!(status.as_u16(), 200);
    }
    assert_eq!(app.stock_of("book-1").await, 10);
}

async fn only_a_confirmed_order_can_be_cancelled(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 1).await;
    let refused = app.post_order(&order("book-1", 5, "user-1")).await;
    let refused = problem(refused, 409).await;
    let id = refused["orderId"].as_str().unwrap();

    let body = problem(cancel(&app, id, json!({})).await, 409).await;
    assert_eq!(body["type"], "/problems/not-cancellable");
    assert_eq!(body["orderId"], id);
    assert!(
        body["detail"].as_str().unwrap().contains("rejected"),
        "{body}"
    );
    let read: Value = app
        .get(&format!("/orders/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "rejected");
    assert_eq!(app.stock_of("book-1").await, 1);
}

async fn cancelling_an_unknown_or_malformed_id_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = cancel(&app, &uuid::Uuid::new_v4().to_string(), json!({})).await;
    assert_eq!(problem(unknown, 404).await["type"], "/problems/not-found");
    problem(cancel(&app, "not-a-uuid", json!({})).await, 400).await;
    let empty_reason = cancel(
        &app,
        &uuid::Uuid::new_v4().to_string(),
        json!({ "reason": "" }),
    )
    .await;
    assert_eq!(
        problem(empty_reason, 400).await["errors"][0]["field"],
        "/reason"
    );
}

async fn a_keyed_retry_after_a_cancel_answers_the_order_as_it_stands(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;
    let purchase = order("book-1", 2, "user-1");
    let placed: Value = app
        .post_order_with_key(&purchase, "cancel-me")
        .await
        .json()
        .await
        .unwrap();
    let id = placed["id"].as_str().unwrap();
    assert_eq!(cancel(&app, id, json!({})).await.status().as_u16(), 200);

    let retried = app.post_order_with_key(&purchase, "cancel-me").await;
    assert_eq!(retried.status().as_u16(), 201);
    assert_eq!(
        retried.headers().get("idempotent-replayed").unwrap(),
        "true"
    );
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["id"], id);
    assert_eq!(retried["status"], "cancelled");
    assert_eq!(app.stock_of("book-1").await, 5, "nothing taken again");
}

on_both_backends!(
    a_cancelled_order_gives_its_stock_back_once_however_often_it_is_cancelled,
    concurrent_first_cancels_give_the_stock_back_once,
    only_a_confirmed_order_can_be_cancelled,
    cancelling_an_unknown_or_malformed_id_is_refused,
    a_keyed_retry_after_a_cancel_answers_the_order_as_it_stands,
);
