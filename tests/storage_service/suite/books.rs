//! Books: putting, reading and listing them, and setting their stock.

use order_processor::generated::storage_service::client::types;
use serde_json::json;

use super::{
    problems::{field, problem, raw_problem},
    service::{as_json, book_input, start},
};

#[tokio::test]
async fn put_book_creates_a_book_that_get_book_reads_back() {
    let service = start().await;

    let created = service
        .client
        .put_book()
        .id("book-1")
        .body(book_input("The Rust Programming Language", 3999, 10))
        .send()
        .await
        .expect("put a book");
    assert_eq!(created.status().as_u16(), 200);
    let read = service.client.get_book().id("book-1").send().await.unwrap();
    assert_eq!(read.status().as_u16(), 200);

    assert_eq!(
        as_json(&read.into_inner()),
        json!({
            "id": "book-1",
            "title": "The Rust Programming Language",
            "author": "An Author",
            "price": 3999,
            "currency": "EUR",
            "quantity": 10
        })
    );
    assert_eq!(as_json(&created.into_inner())["id"], "book-1");
}

#[tokio::test]
async fn put_book_replaces_the_details_and_stock_of_an_existing_book() {
    let service = start().await;
    service.book("book-1", 10).await;

    let replaced = service
        .client
        .put_book()
        .id("book-1")
        .body(book_input("Second Edition", 4599, 3))
        .send()
        .await
        .expect("replace a book")
        .into_inner();

    assert_eq!(replaced.title, "Second Edition");
    assert_eq!(*replaced.price, 4599);
    assert_eq!(*replaced.quantity, 3);
    let read = service.client.get_book().id("book-1").send().await.unwrap();
    assert_eq!(as_json(&read.into_inner()), as_json(&replaced));
    let all = service.client.list_books().send().await.unwrap();
    assert_eq!(all.items.len(), 1, "replacing must not add a book");
}

#[tokio::test]
async fn a_book_that_has_been_ordered_can_still_be_replaced_and_its_orders_keep_their_price() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 2).await;

    service
        .client
        .put_book()
        .id("book-1")
        .body(book_input("Cheaper", 999, 10))
        .send()
        .await
        .expect("replace an ordered book");

    let kept = service.get_order(order.id).await;
    assert_eq!(*kept.unit_price, 1299);
    assert_eq!(*kept.total_price, 2598);
    let later = service.order("book-1", "user-1", 2).await;
    assert_eq!(*later.unit_price, 999);
    assert_eq!(*later.total_price, 1998);
}

#[tokio::test]
async fn get_book_answers_404_for_an_unknown_id() {
    let service = start().await;

    let problem = problem(
        service.client.get_book().id("no-such-book").send().await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

#[tokio::test]
async fn book_ids_with_a_slash_a_control_character_or_over_64_characters_are_refused_with_400_naming_id()
 {
    let service = start().await;
    service.book("a", 1).await;
    let too_long = "x".repeat(65);
    let body = json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1});
    for id in [
        "a%2Fb",
        "a%00b",
        "a%1Fb",
        "a%7Fb",
        "a%C2%85b",
        "a%C2%9Fb",
        too_long.as_str(),
    ] {
        let get = service.http.get(service.at(&format!("/books/{id}")));
        let put = service
            .http
            .put(service.at(&format!("/books/{id}")))
            .json(&body);
        let quantity = service
            .http
            .put(service.at(&format!("/books/{id}/quantity")))
            .json(&json!({"quantity": 1}));
        for request in [get, put, quantity] {
            let problem = raw_problem(request.send().await.unwrap(), 400).await;
            assert_eq!(field(&problem), "id", "{id}: {problem}");
            assert_eq!(problem["type"], "/problems/invalid-request");
        }
    }
    let all = service.client.list_books().send().await.unwrap();
    assert_eq!(all.items.len(), 1, "no refused id may create a book");
}

#[tokio::test]
async fn book_ids_of_64_characters_of_any_script_are_accepted() {
    let service = start().await;
    // 64 characters but 128 bytes: the limit counts characters, as JSON Schema does.
    let id = "é".repeat(64);

    service.book(&id, 1).await;

    assert_eq!(service.stock(&id).await, 1);
}

#[tokio::test]
async fn put_book_refuses_fields_that_break_their_constraints_with_400_and_stores_nothing() {
    let service = start().await;
    let valid = json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1});
    let cases = [
        ("/title", json!({"title": ""})),
        ("/author", json!({"author": "x".repeat(501)})),
        ("/price", json!({"price": -1})),
        ("/price", json!({"price": 100_000_000_001_i64})),
        ("/currency", json!({"currency": "eur"})),
        ("/quantity", json!({"quantity": -1})),
        ("/quantity", json!({"quantity": 1_000_000_001})),
        ("/quantity", json!({"quantity": "1"})),
    ];
    for (pointer, change) in cases {
        let mut body = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = service
            .http
            .put(service.at("/books/book-1"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), pointer, "{body}: {problem}");
    }
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("title");
    let response = service
        .http
        .put(service.at("/books/book-1"))
        .json(&missing)
        .send()
        .await
        .unwrap();
    raw_problem(response, 400).await;

    problem(service.client.get_book().id("book-1").send().await, 404);
}

#[tokio::test]
async fn list_books_answers_every_book_ordered_by_id() {
    let service = start().await;
    let empty = service.client.list_books().send().await.unwrap();
    assert!(empty.items.is_empty());

    for id in ["book-b", "book-c", "book-a", "book-10", "book-2"] {
        service.book(id, 1).await;
    }
    let listed = service.client.list_books().send().await.unwrap();

    assert_eq!(listed.status().as_u16(), 200);
    let ids: Vec<&str> = listed.items.iter().map(|book| book.id.as_str()).collect();
    assert_eq!(
        ids,
        ["book-10", "book-2", "book-a", "book-b", "book-c"],
        "ordered by id, as text"
    );
}

#[tokio::test]
async fn set_book_quantity_sets_an_absolute_stock_level_and_keeps_the_details() {
    let service = start().await;
    let before = service.book("book-1", 10).await;

    let response = service
        .client
        .set_book_quantity()
        .id("book-1")
        .body(types::QuantityUpdate {
            quantity: types::Stock(25),
        })
        .send()
        .await
        .expect("set the stock");

    assert_eq!(response.status().as_u16(), 200);
    let after = response.into_inner();
    assert_eq!(*after.quantity, 25);
    assert_eq!((&after.title, *after.price), (&before.title, *before.price));
    assert_eq!(service.stock("book-1").await, 25);
    // Zero is a stock level like any other.
    service
        .client
        .set_book_quantity()
        .id("book-1")
        .body(types::QuantityUpdate {
            quantity: types::Stock(0),
        })
        .send()
        .await
        .expect("set the stock to zero");
    assert_eq!(service.stock("book-1").await, 0);
}

#[tokio::test]
async fn set_book_quantity_answers_404_for_an_unknown_book_and_creates_none() {
    let service = start().await;

    let problem = problem(
        service
            .client
            .set_book_quantity()
            .id("no-such-book")
            .body(types::QuantityUpdate {
                quantity: types::Stock(5),
            })
            .send()
            .await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
    let all = service.client.list_books().send().await.unwrap();
    assert!(all.items.is_empty());
}

#[tokio::test]
async fn set_book_quantity_refuses_a_negative_stock_with_400_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;

    let problem = problem(
        service
            .client
            .set_book_quantity()
            .id("book-1")
            .body(types::QuantityUpdate {
                quantity: types::Stock(-1),
            })
            .send()
            .await,
        400,
    );

    assert_eq!(problem.errors[0].field, "/quantity");
    assert_eq!(service.stock("book-1").await, 10);
}
