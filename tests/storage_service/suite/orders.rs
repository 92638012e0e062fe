//! Creating and reading orders: once per id, at the price the book has then.

use std::collections::BTreeSet;

use order_processor::generated::storage_service::client::types;
use serde_json::{Value, json};
use types::OrderStatus::{Confirmed, Pending};
use uuid::Uuid;

use super::{
    problems::{field, problem, raw_problem},
    service::{as_json, new_order, start},
};

#[tokio::test]
async fn create_order_answers_201_with_a_pending_order_at_the_books_current_price() {
    let service = start().await;
    service.book("book-1", 10).await;
    let id = Uuid::new_v4();

    let response = service
        .client
        .create_order()
        .body(new_order(id, "book-1", "user-17", 3))
        .send()
        .await
        .expect("create an order");

    assert_eq!(response.status().as_u16(), 201);
    let order = response.into_inner();
    assert_eq!(order.id, id);
    assert_eq!(order.book_id.as_str(), "book-1");
    assert_eq!(order.user_id.as_str(), "user-17");
    assert_eq!(order.quantity.get(), 3);
    assert_eq!(order.status, Pending);
    assert!(!order.stock_held);
    assert!(order.reason.is_none());
    assert_eq!((*order.unit_price, *order.total_price), (1299, 3897));
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.created_at, order.updated_at);
    // Recording an order takes no stock: that is `take_stock`'s job.
    assert_eq!(service.stock("book-1").await, 10);
}

#[tokio::test]
async fn creating_the_same_order_again_answers_200_with_the_same_record_whatever_its_status_now() {
    let service = start().await;
    service.book("book-1", 10).await;
    let body = new_order(Uuid::new_v4(), "book-1", "user-1", 2);
    let first = service
        .client
        .create_order()
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 201);

    let again = service
        .client
        .create_order()
        .body(body.clone())
        .send()
        .await
        .unwrap();

    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(as_json(&again.into_inner()), as_json(&first.into_inner()));

    service.take(body.order_id).await;
    service
        .change(body.order_id, Pending, Confirmed)
        .await
        .unwrap();
    let after_confirm = service
        .client
        .create_order()
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(after_confirm.status().as_u16(), 200);
    assert_eq!(after_confirm.status, Confirmed);
    assert_eq!(
        as_json(&after_confirm.into_inner()),
        as_json(&service.get_order(body.order_id).await)
    );
    let page = service.list("user-1", 100, None).await;
    assert_eq!(page.items.len(), 1, "one order, however often it is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_of_the_same_order_record_it_once_and_all_answer_the_same_record() {
    let service = start().await;
    service.book("book-1", 10).await;
    let body = new_order(Uuid::new_v4(), "book-1", "user-1", 1);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, body) = (service.client.clone(), body.clone());
        tasks.spawn(async move { client.create_order().body(body).send().await });
    }
    let responses: Vec<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| result.expect("every create succeeds"))
        .collect();

    let created = responses
        .iter()
        .filter(|response| response.status().as_u16() == 201)
        .count();
    assert_eq!(created, 1, "exactly one call creates the order");
    let records: BTreeSet<String> = responses
        .into_iter()
        .map(|response| as_json(&response.into_inner()).to_string())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(service.list("user-1", 100, None).await.items.len(), 1);
}

#[tokio::test]
async fn an_order_id_in_upper_case_names_the_same_order() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 1).await;
    let upper = order.id.to_string().to_uppercase();

    let again = service
        .http
        .post(service.at("/orders"))
        .json(&json!({
            "orderId": upper, "bookId": "book-1", "quantity": 1,
            "userId": "user-1", "status": "pending"
        }))
        .send()
        .await
        .unwrap();
    let read = service
        .http
        .get(service.at(&format!("/orders/{upper}")))
        .send()
        .await
        .unwrap();

    assert_eq!(again.status().as_u16(), 200, "a retry, not a new order");
    assert_eq!(read.status().as_u16(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["id"], order.id.to_string());
}

#[tokio::test]
async fn creating_another_order_under_an_existing_id_answers_409_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    service.book("book-2", 10).await;
    let id = Uuid::new_v4();
    let original = service
        .client
        .create_order()
        .body(new_order(id, "book-1", "user-1", 2))
        .send()
        .await
        .unwrap()
        .into_inner();

    for other in [
        new_order(id, "book-1", "user-1", 3),
        new_order(id, "book-2", "user-1", 2),
        new_order(id, "book-1", "user-2", 2),
        // An unknown book under a taken id is still a conflict: the id decides first.
        new_order(id, "no-such-book", "user-1", 2),
    ] {
        let problem = problem(service.client.create_order().body(other).send().await, 409);
        assert_eq!(problem.type_, "/problems/conflict");
    }

    assert_eq!(
        as_json(&service.get_order(id).await),
        as_json(&original),
        "the first order stays as it was"
    );
    assert!(service.list("user-2", 100, None).await.items.is_empty());
}

#[tokio::test]
async fn create_order_for_an_unknown_book_answers_422_and_records_nothing() {
    let service = start().await;
    let id = Uuid::new_v4();

    let refused = problem(
        service
            .client
            .create_order()
            .body(new_order(id, "no-such-book", "user-1", 1))
            .send()
            .await,
        422,
    );

    assert_eq!(refused.type_, "/problems/unknown-book");
    problem(service.client.get_order().id(id).send().await, 404);
}

#[tokio::test]
async fn create_order_refuses_invalid_fields_with_400_naming_the_field_and_records_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let id = Uuid::new_v4();
    let valid = json!({
        "orderId": id, "bookId": "book-1", "quantity": 1, "userId": "user-1", "status": "pending"
    });
    let cases = [
        ("/quantity", json!({"quantity": 0})),
        ("/quantity", json!({"quantity": -1})),
        ("/quantity", json!({"quantity": 1001})),
        ("/quantity", json!({"quantity": 1.5})),
        ("/status", json!({"status": "confirmed"})),
        ("/status", json!({"status": "shipped"})),
        ("/orderId", json!({"orderId": "not-a-uuid"})),
        ("/bookId", json!({"bookId": "a/b"})),
        ("/bookId", json!({"bookId": ""})),
        ("/userId", json!({"userId": "line\nbreak"})),
        ("/userId", json!({"userId": "u".repeat(65)})),
        ("/bookId", json!({"bookId": null})),
    ];
    for (pointer, change) in cases {
        let mut body = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = service
            .http
            .post(service.at("/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), pointer, "{body}: {problem}");
    }
    for missing in ["orderId", "bookId", "quantity", "userId", "status"] {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(missing);
        let response = service
            .http
            .post(service.at("/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        raw_problem(response, 400).await;
    }

    problem(service.client.get_order().id(id).send().await, 404);
}

#[tokio::test]
async fn get_order_reads_back_the_recorded_order() {
    let service = start().await;
    service.book("book-1", 10).await;
    let created = service.order("book-1", "user-1", 1).await;

    let read = service
        .client
        .get_order()
        .id(created.id)
        .send()
        .await
        .unwrap();

    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(as_json(&read.into_inner()), as_json(&created));
}

#[tokio::test]
async fn get_order_answers_404_for_an_unknown_id() {
    let service = start().await;

    let problem = problem(
        service.client.get_order().id(Uuid::new_v4()).send().await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

#[tokio::test]
async fn order_ids_that_are_not_uuids_are_refused_with_400_naming_id_on_every_order_route() {
    let service = start().await;
    let change = json!({"from": "pending", "to": "rejected"});
    for id in [
        "not-a-uuid",
        "1234",
        "0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5",
        "%00",
    ] {
        let requests = [
            service.http.get(service.at(&format!("/orders/{id}"))),
            service
                .http
                .put(service.at(&format!("/orders/{id}/status")))
                .json(&change),
            service.http.put(service.at(&format!("/orders/{id}/stock"))),
            service
                .http
                .delete(service.at(&format!("/orders/{id}/stock"))),
        ];
        for request in requests {
            let problem = raw_problem(request.send().await.unwrap(), 400).await;
            assert_eq!(field(&problem), "id", "{id}: {problem}");
        }
    }
}
