//! Placing and reading orders.

use serde_json::Value;

use crate::{
    helpers::{Backend, on_both_backends, order, spawn_app},
    support::problem::problem,
};

async fn create_order_returns_201_with_the_confirmed_order_and_its_location(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;

    let response = app.post_order(&order("book-1", 2, "user-1")).await;

    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/orders/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(body["status"], "confirmed");
    assert_eq!(body["bookId"], "book-1");
    assert_eq!(body["userId"], "user-1");
    assert_eq!(body["quantity"], 2);
    assert_eq!(body["unitPrice"], 1299);
    assert_eq!(body["totalPrice"], 2598);
    assert_eq!(body["currency"], "EUR");
    assert!(body.get("reason").is_none(), "{body}");
    assert_eq!(app.stock_of("book-1").await, 3);
}

async fn get_order_returns_the_order_that_was_placed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;
    let created: Value = app
        .post_order(&order("book-1", 1, "user-1"))
        .await
        .json()
        .await
        .unwrap();

    let response = app
        .get(&format!("/orders/{}", created["id"].as_str().unwrap()))
        .await;

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), created);
}

async fn get_order_returns_404_for_an_unknown_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get(&format!("/orders/{}", uuid::Uuid::new_v4())).await;
    problem(response, 404).await;
}

async fn get_order_returns_400_naming_the_id_when_it_is_not_a_uuid(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = problem(app.get("/orders/not-a-uuid").await, 400).await;
    assert_eq!(body["errors"][0]["field"], "id", "{body}");
}

async fn an_order_beyond_the_stock_is_rejected_with_409_and_takes_no_stock(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 1).await;

    let body = problem(app.post_order(&order("book-1", 2, "user-1")).await, 409).await;

    assert_eq!(body["type"], "/problems/out-of-stock");
    let order_id = body["orderId"]
        .as_str()
        .expect("the problem carries the order id");
    let recorded: Value = app
        .get(&format!("/orders/{order_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recorded["status"], "rejected");
    assert!(
        recorded["reason"]
            .as_str()
            .is_some_and(|r| r.contains("has 1 copy in stock")),
        "{recorded}"
    );
    assert_eq!(app.stock_of("book-1").await, 1);
}

async fn an_order_for_an_unknown_book_is_refused_with_422_and_not_recorded(backend: Backend) {
    let app = spawn_app(backend).await;

    let body = problem(
        app.post_order(&order("no-such-book", 1, "user-1")).await,
        422,
    )
    .await;

    assert_eq!(body["type"], "/problems/unknown-book");
    let page: Value = app.get("/orders/user/user-1").await.json().await.unwrap();
    assert_eq!(page["items"], serde_json::json!([]));
}

async fn a_retry_with_the_same_idempotency_key_returns_the_same_order_and_takes_stock_once(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;
    let body = order("book-1", 2, "user-1");

    let first = app.post_order_with_key(&body, "purchase-42").await;
    let second = app.post_order_with_key(&body, "purchase-42").await;

    assert_eq!(first.status().as_u16(), 201);
    assert_eq!(second.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(app.stock_of("book-1").await, 3);
}

async fn a_retry_of_a_rejected_order_answers_409_again_with_the_same_order(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 1).await;
    let body = order("book-1", 3, "user-1");

    let first = problem(app.post_order_with_key(&body, "too-many").await, 409).await;
    app.add_book("book-1", 10).await;
    let second = problem(app.post_order_with_key(&body, "too-many").await, 409).await;

    assert_eq!(first["orderId"], second["orderId"]);
    assert_eq!(app.stock_of("book-1").await, 10);
}

async fn an_idempotency_key_reused_with_another_body_is_refused_with_422(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;

    let first = app
        .post_order_with_key(&order("book-1", 1, "user-1"), "key-1")
        .await;
    assert_eq!(first.status().as_u16(), 201);
    let body = problem(
        app.post_order_with_key(&order("book-1", 2, "user-1"), "key-1")
            .await,
        422,
    )
    .await;

    assert_eq!(body["type"], "/problems/idempotency-key-reused");
    assert_eq!(app.stock_of("book-1").await, 4);
}

async fn orders_without_a_key_are_distinct_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;
    let body = order("book-1", 1, "user-1");

    let first: Value = app.post_order(&body).await.json().await.unwrap();
    let second: Value = app.post_order(&body).await.json().await.unwrap();

    assert_ne!(first["id"], second["id"]);
    assert_eq!(app.stock_of("book-1").await, 3);
}

async fn a_users_orders_are_listed_newest_first_in_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 100).await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        let created: Value = app
            .post_order(&order("book-1", 1, "user-1"))
            .await
            .json()
            .await
            .unwrap();
        placed.push(created["id"].as_str().unwrap().to_owned());
    }
    app.post_order(&order("book-1", 1, "someone-else")).await;

    let first: Value = app
        .get("/orders/user/user-1?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), vec![placed[4].clone(), placed[3].clone()]);

    // New orders arriving between pages neither shift nor repeat the next page.
    app.post_order(&order("book-1", 1, "user-1")).await;
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second: Value = app
        .get(&format!("/orders/user/user-1?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&second), vec![placed[2].clone(), placed[1].clone()]);
    let cursor = second["nextCursor"].as_str().expect("a last page");
    let third: Value = app
        .get(&format!("/orders/user/user-1?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&third), vec![placed[0].clone()]);
    assert!(third.get("nextCursor").is_none(), "{third}");
}

async fn listing_uses_20_orders_a_page_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 100).await;
    for _ in 0..21 {
        app.post_order(&order("book-1", 1, "user-1")).await;
    }
    let page: Value = app.get("/orders/user/user-1").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    assert!(page["nextCursor"].is_string());
}

async fn listing_refuses_a_cursor_it_cannot_read_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = problem(app.get("/orders/user/user-1?cursor=bogus").await, 400).await;
    assert_eq!(body["errors"][0]["field"], "cursor", "{body}");
}

async fn listing_refuses_a_limit_outside_1_to_100_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for limit in ["0", "101", "-1", "ten"] {
        let body = problem(
            app.get(&format!("/orders/user/user-1?limit={limit}")).await,
            400,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "limit", "{limit}: {body}");
    }
}

on_both_backends!(
    create_order_returns_201_with_the_confirmed_order_and_its_location,
    get_order_returns_the_order_that_was_placed,
    get_order_returns_404_for_an_unknown_id,
    get_order_returns_400_naming_the_id_when_it_is_not_a_uuid,
    an_order_beyond_the_stock_is_rejected_with_409_and_takes_no_stock,
    an_order_for_an_unknown_book_is_refused_with_422_and_not_recorded,
    a_retry_with_the_same_idempotency_key_returns_the_same_order_and_takes_stock_once,
    a_retry_of_a_rejected_order_answers_409_again_with_the_same_order,
    an_idempotency_key_reused_with_another_body_is_refused_with_422,
    orders_without_a_key_are_distinct_orders,
    a_users_orders_are_listed_newest_first_in_pages,
    listing_uses_20_orders_a_page_by_default,
    listing_refuses_a_cursor_it_cannot_read_with_400,
    listing_refuses_a_limit_outside_1_to_100_with_400,
);
