//! Status changes: the moves an order can make, each once, and the ones it cannot.

use order_processor::generated::storage_service::client::{ResponseValue, types};
use serde_json::json;
use types::OrderStatus::{Confirmed, Failed, Pending, Rejected};
use uuid::Uuid;

use super::{
    problems::{field, problem, raw_problem},
    service::{as_json, start, status_change},
};

#[tokio::test]
async fn an_order_that_holds_its_stock_moves_from_pending_to_confirmed() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 2).await;
    service.take(order.id).await;

    let response = service
        .client
        .update_order_status()
        .id(order.id)
        .body(status_change(
            Pending,
            Confirmed,
            Some("ignored for a confirmed order"),
        ))
        .send()
        .await
        .expect("confirm");

    assert_eq!(response.status().as_u16(), 200);
    let confirmed = response.into_inner();
    assert_eq!(confirmed.status, Confirmed);
    assert!(confirmed.stock_held);
    assert!(
        confirmed.reason.is_none(),
        "a confirmed order has no reason"
    );
    assert!(confirmed.updated_at >= order.updated_at);
    assert_eq!(
        as_json(&service.get_order(order.id).await),
        as_json(&confirmed)
    );
    assert_eq!(service.stock("book-1").await, 8);
}

#[tokio::test]
async fn pending_orders_move_to_rejected_or_failed_with_their_reason() {
    let service = start().await;
    service.book("book-1", 10).await;
    for to in [Rejected, Failed] {
        let order = service.order("book-1", "user-1", 1).await;

        let changed = service
            .client
            .update_order_status()
            .id(order.id)
            .body(status_change(Pending, to, Some("Book book-1 is sold out.")))
            .send()
            .await
            .expect("change the status")
            .into_inner();

        assert_eq!(changed.status, to);
        assert_eq!(
            changed.reason.as_deref().map(String::as_str),
            Some("Book book-1 is sold out.")
        );
        assert_eq!(service.get_order(order.id).await.status, to);
    }
}

#[tokio::test]
async fn confirming_an_order_that_does_not_hold_its_stock_answers_409_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let never_took = service.order("book-1", "user-1", 1).await;
    let gave_back = service.order("book-1", "user-1", 1).await;
    service.take(gave_back.id).await;
    service
        .client
        .return_stock()
        .id(gave_back.id)
        .send()
        .await
        .unwrap();

    for order in [&never_took, &gave_back] {
        let problem = problem(service.change(order.id, Pending, Confirmed).await, 409);
        assert_eq!(problem.type_, "/problems/conflict");
        let now = service.get_order(order.id).await;
        assert_eq!(now.status, Pending);
        assert!(!now.stock_held);
    }
    assert_eq!(service.stock("book-1").await, 10);
}

#[tokio::test]
async fn a_status_change_from_a_status_the_order_is_not_in_answers_409_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let rejected = service.order("book-1", "user-1", 1).await;
    service
        .change(rejected.id, Pending, Rejected)
        .await
        .unwrap();
    let confirmed = service.order("book-1", "user-1", 1).await;
    service.take(confirmed.id).await;
    service
        .change(confirmed.id, Pending, Confirmed)
        .await
        .unwrap();

    for (order, to) in [
        (&rejected, Failed),
        (&rejected, Confirmed),
        (&confirmed, Rejected),
        (&confirmed, Failed),
    ] {
        let before = service.get_order(order.id).await;
        let problem = problem(service.change(order.id, Pending, to).await, 409);
        assert_eq!(problem.type_, "/problems/conflict");
        assert_eq!(
            as_json(&service.get_order(order.id).await),
            as_json(&before),
            "pending -> {to}"
        );
    }
}

#[tokio::test]
async fn repeating_a_status_change_that_already_happened_answers_200_with_the_order_unchanged() {
    let service = start().await;
    service.book("book-1", 10).await;
    let rejected = service.order("book-1", "user-1", 1).await;
    let confirmed = service.order("book-1", "user-1", 1).await;
    service.take(confirmed.id).await;

    for (order, to) in [(&rejected, Rejected), (&confirmed, Confirmed)] {
        let first = service
            .change(order.id, Pending, to)
            .await
            .unwrap()
            .into_inner();
        let again = service.change(order.id, Pending, to).await.unwrap();
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(as_json(&again.into_inner()), as_json(&first), "{to}");
    }
}

#[tokio::test]
async fn a_status_change_no_order_can_make_answers_400_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 1).await;
    service.take(order.id).await;

    for (from, to, pointer) in [
        (Pending, Pending, "/to"),
        (Confirmed, Failed, "/from"),
        (Confirmed, Confirmed, "/from"),
        (Rejected, Pending, "/from"),
        (Failed, Confirmed, "/from"),
    ] {
        let problem = problem(service.change(order.id, from, to).await, 400);
        assert_eq!(problem.errors[0].field, pointer, "{from} -> {to}");
    }
    // The same holds for an order that does not exist: the change itself is wrong.
    problem(service.change(Uuid::new_v4(), Pending, Pending).await, 400);

    let url = service.at(&format!("/orders/{}/status", order.id));
    for (body, pointer) in [
        (json!({"from": "pending", "to": "shipped"}), "/to"),
        (json!({"from": "pending"}), "/to"),
        (json!({"to": "rejected"}), "/from"),
        (
            json!({"from": "pending", "to": "rejected", "reason": ""}),
            "/reason",
        ),
        (
            json!({"from": "pending", "to": "rejected", "reason": "r".repeat(501)}),
            "/reason",
        ),
    ] {
        let response = service.http.put(&url).json(&body).send().await.unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), pointer, "{body}: {problem}");
    }

    let now = service.get_order(order.id).await;
    assert_eq!(now.status, Pending);
    assert!(now.stock_held);
}

#[tokio::test]
async fn update_order_status_answers_404_for_an_unknown_order() {
    let service = start().await;

    let problem = problem(service.change(Uuid::new_v4(), Pending, Rejected).await, 404);

    assert_eq!(problem.type_, "/problems/not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_status_changes_of_one_order_exactly_one_wins() {
    let service = start().await;
    service.book("book-1", 100).await;
    for _ in 0..10 {
        let order = service.order("book-1", "user-1", 1).await;
        service.take(order.id).await;
        let (confirm, fail) = tokio::join!(
            service.change(order.id, Pending, Confirmed),
            service.change(order.id, Pending, Failed)
        );
        let winner = match (confirm, fail) {
            (Ok(order), Err(loser)) => {
                problem(Err::<ResponseValue<()>, _>(loser), 409);
                order.into_inner()
            }
            (Err(loser), Ok(order)) => {
                problem(Err::<ResponseValue<()>, _>(loser), 409);
                order.into_inner()
            }
            other => panic!("exactly one change must win: {other:?}"),
        };
        assert_eq!(service.get_order(order.id).await.status, winner.status);
    }
}
