//! The per-user order limit (`ORDERS_PER_USER_PER_MINUTE`): the order past it is a `429`
//! Problem with `Retry-After` and records nothing; other users, invalid requests and a service
//! without a limit are not held to it; each replica counts on its own.

use std::{num::NonZeroU32, time::Duration};

use order_processor::startup::Options;
use serde_json::Value;

use crate::{
    helpers::{
        Backend, TestApp, on_both_backends, order, spawn_app, spawn_app_with,
        spawn_order_processor_with,
    },
    support::problem::problem,
};

fn limited(per_minute: u32) -> Options {
    Options {
        orders_per_user_per_minute: Some(NonZeroU32::new(per_minute).expect("a positive limit")),
        ..Options::default()
    }
}

/// The whole seconds of a response's `Retry-After`.
fn retry_after(response: &reqwest::Response) -> u64 {
    let value = response
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {}", response.status()));
    value
        .to_str()
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After {value:?} is not whole seconds"))
}

/// The orders `user` has, as their list shows them.
async fn orders_of(app: &TestApp, user: &str) -> usize {
    let page: Value = app
        .get(&format!("/orders/user/{user}?limit=100"))
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().expect("a page of orders").len()
}

async fn the_order_past_the_limit_is_a_429_with_retry_after_and_records_nothing(backend: Backend) {
    let app = spawn_app_with(backend, limited(3)).await;
    app.add_book("book-1", 10).await;
    for _ in 0..3 {
        let placed = app.post_order(&order("book-1", 1, "user-1")).await;
        assert_eq!(placed.status(), 201);
    }

    let refused = app
        .post_order_with_key(&order("book-1", 1, "user-1"), "past-the-limit")
        .await;

    // Three a minute: the next order 20 s after the first, less the time the test took.
    let seconds = retry_after(&refused);
    assert!((1..=20).contains(&seconds), "Retry-After: {seconds}");
    let body = problem(refused, 429).await;
    assert_eq!(body["type"], "/problems/rate-limited", "{body}");
    assert_eq!(body["title"], "Too many orders for this user", "{body}");
    let detail = body["detail"].as_str().expect("a detail");
    assert!(detail.contains("3 orders a minute"), "{detail}");
    assert_eq!(orders_of(&app, "user-1").await, 3);
    assert_eq!(app.stock_of("book-1").await, 7);

    let other = app.post_order(&order("book-1", 1, "user-2")).await;
    assert_eq!(other.status(), 201, "another user has a quota of their own");
    assert_eq!(app.stock_of("book-1").await, 6);
}

on_both_backends!(the_order_past_the_limit_is_a_429_with_retry_after_and_records_nothing);

#[tokio::test]
async fn refused_requests_do_not_count_against_the_limit() {
    let app = spawn_app_with(Backend::Embedded, limited(1)).await;
    app.add_book("book-1", 5).await;

    problem(app.post_order(&order("book-1", 0, "user-1")).await, 400).await;
    problem(
        app.post_order_with_key(&order("book-1", 1, "user-1"), &"k".repeat(129))
            .await,
        400,
    )
    .await;
    let placed = app.post_order(&order("book-1", 1, "user-1")).await;
    assert_eq!(placed.status(), 201, "the invalid requests used no quota");

    let refused = app.post_order(&order("book-1", 1, "user-1")).await;
    problem(refused, 429).await;
}

#[tokio::test]
async fn a_user_who_waits_as_retry_after_says_is_admitted_again() {
    // One a second: the wait is short, and the test never depends on how long the burst took.
    let app = spawn_app_with(Backend::Embedded, limited(60)).await;
    app.add_book("book-1", 1000).await;
    let mut placed = 0;
    let refused = loop {
        let response = app.post_order(&order("book-1", 1, "user-1")).await;
        if response.status() != 201 {
            break response;
        }
        placed += 1;
        assert!(placed <= 200, "no order was refused");
    };
    assert!(placed >= 60, "only {placed} orders were admitted");
    let seconds = retry_after(&refused);
    assert_eq!(seconds, 1);
    problem(refused, 429).await;

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let again = app.post_order(&order("book-1", 1, "user-1")).await;
    assert_eq!(again.status(), 201);
}

#[tokio::test]
async fn without_a_limit_a_user_places_orders_at_any_rate() {
    let app = spawn_app(Backend::Embedded).await;
    app.add_book("book-1", 100).await;
    for n in 0..40 {
        let placed = app.post_order(&order("book-1", 1, "user-1")).await;
        assert_eq!(placed.status(), 201, "order {n}");
    }
    assert_eq!(orders_of(&app, "user-1").await, 40);
}

#[tokio::test]
async fn each_replica_counts_the_orders_it_takes_on_its_own() {
    // A second Order Processor over the same store, as a second replica behind the Service.
    let app = spawn_app_with(Backend::Embedded, limited(2)).await;
    app.add_book("book-1", 10).await;
    let second = spawn_order_processor_with(app.store.clone(), limited(2)).await;
    let client = reqwest::Client::new();

    for address in [&app.address, &second.url()] {
        for expected in [201, 201, 429] {
            let response = client
                .post(format!("{address}/orders"))
                .json(&order("book-1", 1, "user-1"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), expected, "{address}");
        }
    }
    assert_eq!(orders_of(&app, "user-1").await, 4);
}
