//! Bad input: every refusal is a Problem with the documented status, and nothing is recorded.

use serde_json::{Value, json};

use crate::{
    helpers::{Backend, on_both_backends, order, spawn_app},
    support::problem::problem,
};

async fn invalid_fields_are_refused_with_400_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;
    let cases = [
        (order("book-1", 0, "u"), "/quantity"),
        (order("book-1", -1, "u"), "/quantity"),
        (order("book-1", 1001, "u"), "/quantity"),
        (order("", 1, "u"), "/bookId"),
        (order("a/b", 1, "u"), "/bookId"),
        (order("a\u{0}b", 1, "u"), "/bookId"),
        (order(&"x".repeat(65), 1, "u"), "/bookId"),
        (order("book-1", 1, ""), "/userId"),
        (order("book-1", 1, "line\nbreak"), "/userId"),
        (json!({"quantity": 1, "userId": "u"}), "/bookId"),
        (json!({"bookId": "book-1", "userId": "u"}), "/quantity"),
        (
            json!({"bookId": null, "quantity": 1, "userId": "u"}),
            "/bookId",
        ),
        (
            json!({"bookId": "book-1", "quantity": "2", "userId": "u"}),
            "/quantity",
        ),
        (
            json!({"bookId": "book-1", "quantity": 1.5, "userId": "u"}),
            "/quantity",
        ),
        (
            json!({"bookId": 7, "quantity": 1, "userId": "u"}),
            "/bookId",
        ),
    ];
    for (body, field) in cases {
        let problem = problem(app.post_order(&body).await, 400).await;
        assert_eq!(problem["type"], "/problems/invalid-request", "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    assert_eq!(app.stock_of("book-1").await, 5);
    let page: Value = app.get("/orders/user/u").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
}

async fn a_body_that_is_not_a_json_object_is_refused_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        "{\"bookId\": \"book-1\", \"quantity\": 1",
        "[]",
        "null",
        "",
        "not json",
    ] {
        let response = app
            .client
            .post(format!("{}/orders", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
}

async fn a_body_that_is_not_json_is_refused_with_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("content-type", "text/plain")
        .body("bookId=book-1")
        .send()
        .await
        .unwrap();
    let body = problem(response, 415).await;
    assert_eq!(body["type"], "/problems/unsupported-media-type");
}

async fn a_body_over_64_kib_is_refused_with_413_whether_sized_or_chunked(backend: Backend) {
    let app = spawn_app(backend).await;
    let large = format!("{{\"bookId\": \"{}\"}}", "x".repeat(70 * 1024));
    let sized = app
        .client
        .post(format!("{}/orders", app.address))
        .header("content-type", "application/json")
        .body(large.clone())
        .send()
        .await
        .unwrap();
    problem(sized, 413).await;

    let chunks = futures::stream::iter(
        large
            .into_bytes()
            .chunks(4096)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = app
        .client
        .post(format!("{}/orders", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    problem(chunked, 413).await;
}

async fn an_invalid_idempotency_key_is_refused_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("book-1", 5).await;
    for key in ["has space", &"k".repeat(129)] {
        let body = problem(
            app.post_order_with_key(&order("book-1", 1, "u"), key).await,
            400,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "Idempotency-Key", "{body}");
    }
    // poem reads a header that is not visible ASCII as absent; the key must not be dropped.
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .json(&order("book-1", 1, "u"))
        .send()
        .await
        .unwrap();
    let body = problem(response, 400).await;
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key", "{body}");
    assert_eq!(app.stock_of("book-1").await, 5);
}

async fn an_unknown_route_answers_404_as_a_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    // Below the docs' paths too: those take their own paths only.
    for path in ["/no/such/route", "/docs/index.html", "/openapi.json/x"] {
        let body = problem(app.get(path).await, 404).await;
        assert_eq!(body["type"], "/problems/not-found", "{path}");
    }
}

async fn a_wrong_method_answers_405_with_allow(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .delete(format!("{}/orders", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    problem(response, 405).await;

    let id = uuid::Uuid::new_v4();
    let response = app
        .client
        .put(format!("{}/orders/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    problem(response, 405).await;
}

async fn every_response_carries_a_request_id_and_echoes_the_callers(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/health").await;
    assert!(!response.headers()["x-request-id"].is_empty());

    let response = app
        .client
        .get(format!("{}/no/such/route", app.address))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

on_both_backends!(
    invalid_fields_are_refused_with_400_naming_the_field,
    a_body_that_is_not_a_json_object_is_refused_with_400,
    a_body_that_is_not_json_is_refused_with_415,
    a_body_over_64_kib_is_refused_with_413_whether_sized_or_chunked,
    an_invalid_idempotency_key_is_refused_with_400,
    an_unknown_route_answers_404_as_a_problem,
    a_wrong_method_answers_405_with_allow,
    every_response_carries_a_request_id_and_echoes_the_callers,
);
