//! Problems the router and the body reader answer, and the limits of the contract: the
//! size of a body, the largest amounts.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    problems::{problem, raw_problem},
    service::{book_input, new_order, start},
};

/// The server's body limit, restated here so that a change to it has to be a decision.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes that read a JSON body, with a body each would accept.
fn json_routes(order: Uuid) -> Vec<(reqwest::Method, String, Value)> {
    vec![
        (
            reqwest::Method::PUT,
            "/books/book-1".to_owned(),
            json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1}),
        ),
        (
            reqwest::Method::PUT,
            "/books/book-1/quantity".to_owned(),
            json!({"quantity": 1}),
        ),
        (
            reqwest::Method::POST,
            "/orders".to_owned(),
            json!({
                "orderId": order, "bookId": "book-1", "quantity": 1,
                "userId": "user-1", "status": "pending"
            }),
        ),
        (
            reqwest::Method::PUT,
            format!("/orders/{order}/status"),
            json!({"from": "pending", "to": "rejected"}),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Problems the router and the body reader answer

#[tokio::test]
async fn an_unknown_route_answers_404_problem() {
    let service = start().await;
    for path in ["/nope", "/books/book-1/nope", "/orders/x/y/z", "/"] {
        let response = service.http.get(service.at(path)).send().await.unwrap();
        let problem = raw_problem(response, 404).await;
        assert_eq!(problem["type"], "/problems/not-found", "{path}");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_problem_with_allow_naming_the_methods_of_the_path() {
    let service = start().await;
    let order = format!("/orders/{}", Uuid::new_v4());
    let cases = [
        (
            reqwest::Method::DELETE,
            "/books/book-1".to_owned(),
            "GET, PUT",
        ),
        (reqwest::Method::POST, "/books".to_owned(), "GET"),
        (
            reqwest::Method::GET,
            "/books/book-1/quantity".to_owned(),
            "PUT",
        ),
        (reqwest::Method::DELETE, "/orders".to_owned(), "GET, POST"),
        (reqwest::Method::PUT, order.clone(), "GET"),
        (reqwest::Method::GET, format!("{order}/status"), "PUT"),
        (
            reqwest::Method::PATCH,
            format!("{order}/stock"),
            "DELETE, PUT",
        ),
        (reqwest::Method::POST, "/health".to_owned(), "GET"),
    ];
    for (method, path, allow) in cases {
        let response = service
            .http
            .request(method.clone(), service.at(&path))
            .send()
            .await
            .unwrap();
        let header = response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let problem = raw_problem(response, 405).await;
        let methods = |list: &str| -> BTreeSet<String> {
            list.split(',').map(|m| m.trim().to_owned()).collect()
        };
        assert_eq!(methods(&header), methods(allow), "{method} {path}");
        assert_eq!(problem["type"], "/problems/method-not-allowed");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_answers_413_problem_whether_sized_or_chunked_and_64_kib_is_read() {
    let service = start().await;
    let book = json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1})
        .to_string();
    // Trailing white space keeps the JSON valid at any size.
    let padded = |size: usize| {
        let mut bytes = book.clone().into_bytes();
        bytes.resize(size, b' ');
        bytes
    };

    let at_limit = service
        .http
        .put(service.at("/books/book-1"))
        .header("content-type", "application/json")
        .body(padded(MAX_BODY_BYTES))
        .send()
        .await
        .unwrap();
    assert_eq!(
        at_limit.status().as_u16(),
        200,
        "exactly 64 KiB is accepted"
    );

    let sized = service
        .http
        .put(service.at("/books/book-2"))
        .header("content-type", "application/json")
        .body(padded(MAX_BODY_BYTES + 1))
        .send()
        .await
        .unwrap();
    raw_problem(sized, 413).await;

    // Chunked: no Content-Length announces the size, so the reader has to count.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = padded(MAX_BODY_BYTES + 1)
        .chunks(4096)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let chunked = service
        .http
        .post(service.at("/orders"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let too_large = raw_problem(chunked, 413).await;
    assert_eq!(too_large["type"], "/problems/payload-too-large");

    problem(service.client.get_book().id("book-2").send().await, 404);
}

#[tokio::test]
async fn malformed_json_answers_400_problem_on_every_route_that_reads_a_body() {
    let service = start().await;
    for (method, path, _) in json_routes(Uuid::new_v4()) {
        for body in ["", "{", "{\"title\":", "[]", "null", "\"text\"", "{} {}"] {
            let response = service
                .http
                .request(method.clone(), service.at(&path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let problem = raw_problem(response, 400).await;
            assert_eq!(
                problem["type"], "/problems/invalid-request",
                "{method} {path} {body:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_answers_a_problem_whose_status_is_the_http_status() {
    let service = start().await;
    service.book("book-1", 10).await;
    for (method, path, body) in json_routes(Uuid::new_v4()) {
        for content_type in [Some("text/plain"), Some("application/xml"), None] {
            let mut request = service
                .http
                .request(method.clone(), service.at(&path))
                .body(body.to_string());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            // The contract documents 400 for a malformed request; 415 is the precise
            // answer. Either will do, as long as the body says the same as the status line.
            let status = response.status().as_u16();
            assert!(
                status == 400 || status == 415,
                "{method} {path} {content_type:?}: {status}"
            );
            raw_problem(response, status).await;
        }
    }
    assert_eq!(service.stock("book-1").await, 10, "nothing was changed");
}

// ---------------------------------------------------------------------------------------
// Amounts

#[tokio::test]
async fn the_most_expensive_book_in_the_largest_quantity_has_a_valid_total() {
    let service = start().await;
    // The largest price and the largest quantity the contract allows: `Money` is bounded so
    // that their product is still an amount.
    service
        .client
        .put_book()
        .id("dear")
        .body(book_input("Dear", 100_000_000_000, 1000))
        .send()
        .await
        .expect("the largest price is a valid price");

    let order = service
        .client
        .create_order()
        .body(new_order(Uuid::new_v4(), "dear", "user-1", 1000))
        .send()
        .await
        .expect("the order is recorded");

    assert_eq!(order.total_price.0, 100_000_000_000_000);
}
