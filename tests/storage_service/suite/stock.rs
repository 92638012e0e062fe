//! Taking and returning an order's stock: once however often it is repeated, never
//! below zero however many orders take at once.

use std::collections::BTreeSet;

use order_processor::generated::storage_service::client::{ResponseValue, types};
use serde_json::json;
use types::OrderStatus::{Confirmed, Failed, Pending, Rejected};
use uuid::Uuid;

use super::{
    problems::problem,
    service::{as_json, start},
};

// ---------------------------------------------------------------------------------------
// Taking stock

#[tokio::test]
async fn take_stock_answers_200_with_the_allocation_and_the_books_stock_after_it() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;

    let response = service
        .client
        .take_stock()
        .id(order.id)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        as_json(&response.into_inner()),
        json!({
            "orderId": order.id,
            "bookId": "book-1",
            "quantity": 3,
            "state": "held",
            "bookStock": 7
        })
    );
    assert_eq!(service.stock("book-1").await, 7);
    let now = service.get_order(order.id).await;
    assert!(now.stock_held);
    assert_eq!(now.status, Pending, "taking stock does not confirm");
}

#[tokio::test]
async fn repeating_take_stock_answers_the_same_allocation_and_takes_the_stock_once() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;

    let first = service.take(order.id).await;
    let again = service.take(order.id).await;

    assert_eq!(as_json(&again), as_json(&first));
    assert_eq!(service.stock("book-1").await, 7);
    // Confirmed, the order still answers a late retry of its take with its allocation.
    service.change(order.id, Pending, Confirmed).await.unwrap();
    assert_eq!(as_json(&service.take(order.id).await), as_json(&first));
    assert_eq!(service.stock("book-1").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_repeats_of_take_stock_for_one_order_take_its_stock_once() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 4).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let client = service.client.clone();
        tasks.spawn(async move { client.take_stock().id(order.id).send().await });
    }
    let allocations: BTreeSet<i64> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| *result.expect("every repeat succeeds").book_stock)
        .collect();

    assert_eq!(allocations, BTreeSet::from([6]));
    assert_eq!(service.stock("book-1").await, 6);
}

#[tokio::test]
async fn take_stock_answers_409_out_of_stock_takes_nothing_and_the_refusal_stands() {
    let service = start().await;
    service.book("book-1", 2).await;
    let order = service.order("book-1", "user-1", 3).await;

    let refusal = problem(service.client.take_stock().id(order.id).send().await, 409);

    assert_eq!(refusal.type_, "/problems/out-of-stock");
    assert_eq!(refusal.title, "Out of stock");
    assert_eq!(refusal.available, Some(2));
    assert!(
        refusal
            .detail
            .as_deref()
            .is_some_and(|detail| detail.contains("2 copies")),
        "{refusal:?}"
    );
    assert_eq!(service.stock("book-1").await, 2);
    let now = service.get_order(order.id).await;
    assert!(!now.stock_held);
    assert_eq!(now.status, Pending);
    // The refusal is recorded: a retry of the order after restocking meets it again, so
    // the order ends rejected as its first attempt decided.
    service
        .client
        .set_book_quantity()
        .id("book-1")
        .body(types::QuantityUpdate {
            quantity: types::Stock(3),
        })
        .send()
        .await
        .unwrap();
    let again = problem(service.client.take_stock().id(order.id).send().await, 409);
    assert_eq!(again.type_, "/problems/out-of-stock");
    assert_eq!(again.available, Some(3));
    assert_eq!(service.stock("book-1").await, 3);
    let closed = service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, types::AllocationState::Refused);
    assert_eq!(service.stock("book-1").await, 3);
}

#[tokio::test]
async fn take_stock_for_an_order_that_is_no_longer_pending_answers_409_conflict_and_changes_nothing()
 {
    let service = start().await;
    service.book("book-1", 10).await;
    for to in [Rejected, Failed] {
        let order = service.order("book-1", "user-1", 1).await;
        service.change(order.id, Pending, to).await.unwrap();

        let problem = problem(service.client.take_stock().id(order.id).send().await, 409);

        assert_eq!(problem.type_, "/problems/conflict", "{to}");
        assert!(!service.get_order(order.id).await.stock_held);
    }
    assert_eq!(service.stock("book-1").await, 10);
}

#[tokio::test]
async fn take_stock_answers_404_for_an_unknown_order() {
    let service = start().await;

    let problem = problem(
        service.client.take_stock().id(Uuid::new_v4()).send().await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

// ---------------------------------------------------------------------------------------
// Returning stock

#[tokio::test]
async fn return_stock_gives_the_stock_back_once_however_often_it_is_repeated() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;
    service.take(order.id).await;
    service.change(order.id, Pending, Failed).await.unwrap();

    let response = service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        as_json(&response.into_inner()),
        json!({
            "orderId": order.id,
            "bookId": "book-1",
            "quantity": 3,
            "state": "returned",
            "bookStock": 10
        })
    );
    for _ in 0..3 {
        let again = service
            .client
            .return_stock()
            .id(order.id)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(again.state, types::AllocationState::Returned);
        assert_eq!(*again.book_stock, 10);
    }
    assert_eq!(service.stock("book-1").await, 10);
    let now = service.get_order(order.id).await;
    assert!(!now.stock_held);
    assert_eq!(now.status, Failed);
}

#[tokio::test]
async fn a_pending_order_that_gave_its_stock_back_cannot_take_it_again() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;
    service.take(order.id).await;
    service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .unwrap();

    let problem = problem(service.client.take_stock().id(order.id).send().await, 409);

    assert_eq!(problem.type_, "/problems/conflict");
    assert_eq!(service.stock("book-1").await, 10);
    assert!(!service.get_order(order.id).await.stock_held);
}

#[tokio::test]
async fn return_stock_for_a_confirmed_order_answers_409_and_the_order_keeps_its_stock() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;
    service.take(order.id).await;
    service.change(order.id, Pending, Confirmed).await.unwrap();

    let problem = problem(service.client.return_stock().id(order.id).send().await, 409);

    assert_eq!(problem.type_, "/problems/conflict");
    assert_eq!(service.stock("book-1").await, 7);
    let now = service.get_order(order.id).await;
    assert!(now.stock_held);
    assert_eq!(now.status, Confirmed);
}

#[tokio::test]
async fn return_stock_before_take_leaves_a_tombstone_so_a_later_take_answers_409_and_moves_no_stock()
 {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;

    let returned = service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .expect("return before take")
        .into_inner();

    assert_eq!(returned.state, types::AllocationState::Returned);
    assert_eq!((returned.quantity.get(), *returned.book_stock), (3, 10));
    let late_take = problem(service.client.take_stock().id(order.id).send().await, 409);
    assert_eq!(late_take.type_, "/problems/conflict");
    assert_eq!(service.stock("book-1").await, 10);
    let now = service.get_order(order.id).await;
    assert!(!now.stock_held);
    assert_eq!(now.status, Pending);
    problem(service.change(order.id, Pending, Confirmed).await, 409);
}

#[tokio::test]
async fn return_stock_answers_404_for_an_unknown_order() {
    let service = start().await;

    let problem = problem(
        service
            .client
            .return_stock()
            .id(Uuid::new_v4())
            .send()
            .await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

// ---------------------------------------------------------------------------------------
// Concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn parallel_take_stock_calls_never_oversell_and_the_held_quantities_add_up() {
    const INITIAL: i64 = 10;
    let service = start().await;
    service.book("book-1", INITIAL).await;
    let mut orders = Vec::new();
    for i in 0..40 {
        orders.push(service.order("book-1", "user-1", i % 3 + 1).await);
    }

    let mut tasks = tokio::task::JoinSet::new();
    for order in &orders {
        let client = service.client.clone();
        let (id, quantity) = (order.id, i64::from(order.quantity.get()));
        tasks.spawn(async move { (id, quantity, client.take_stock().id(id).send().await) });
    }
    let mut taken = Vec::new();
    let mut refused = Vec::new();
    for (id, quantity, result) in tasks.join_all().await {
        match result {
            Ok(allocation) => {
                assert_eq!(allocation.order_id, id);
                taken.push((quantity, *allocation.book_stock));
            }
            Err(err) => {
                let problem = problem(Err::<ResponseValue<()>, _>(err), 409);
                assert_eq!(problem.type_, "/problems/out-of-stock");
                refused.push(quantity);
            }
        }
    }

    let stock = service.stock("book-1").await;
    let held: i64 = taken.iter().map(|(quantity, _)| quantity).sum();
    assert!(stock >= 0);
    assert_eq!(
        held + stock,
        INITIAL,
        "every copy is in stock or held, once"
    );
    // Each take answered the stock it left; in that order the takes form one serial
    // history from the initial stock down to the final one.
    taken.sort_by_key(|(_, after)| std::cmp::Reverse(*after));
    let mut level = INITIAL;
    for (quantity, after) in &taken {
        level -= quantity;
        assert_eq!(*after, level, "history {taken:?}");
    }
    // Stock only went down, so a refused order asked for more than is left even now.
    assert!(
        refused.iter().all(|quantity| *quantity > stock),
        "refused {refused:?} with {stock} left"
    );
    let holding = futures::future::join_all(orders.iter().map(|order| service.get_order(order.id)))
        .await
        .iter()
        .filter(|order| order.stock_held)
        .map(|order| i64::from(order.quantity.get()))
        .sum::<i64>();
    assert_eq!(holding, held, "stockHeld agrees with the allocations");
}
