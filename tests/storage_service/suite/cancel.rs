//! Cancelling an order: a confirmed one is cancelled and gives its stock back once, however
//! often it is asked; any other is refused.

use order_processor::generated::storage_service::client::types;
use types::OrderStatus::{Confirmed, Pending};

use super::{problems::problem, service::start};

#[tokio::test]
async fn cancel_order_cancels_a_confirmed_order_and_gives_its_stock_back_once() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 4).await;
    service.take(order.id).await;
    service.change(order.id, Pending, Confirmed).await.unwrap();
    assert_eq!(service.stock("book-1").await, 6);

    let cancel = || {
        service
            .client
            .cancel_order()
            .id(order.id)
            .body(types::Cancellation { reason: None })
            .send()
    };
    let cancelled = cancel().await.unwrap().into_inner();
    assert_eq!(cancelled.status, types::OrderStatus::Cancelled);
    assert!(!cancelled.stock_held);
    assert_eq!(service.stock("book-1").await, 10);
    let again = cancel().await.unwrap().into_inner();
    assert_eq!(
        again.updated_at, cancelled.updated_at,
        "nothing changed the second time"
    );
    assert_eq!(service.stock("book-1").await, 10);

    let pending = service.order("book-1", "user-1", 1).await;
    let refused = problem(
        service
            .client
            .cancel_order()
            .id(pending.id)
            .body(types::Cancellation { reason: None })
            .send()
            .await,
        409,
    );
    assert_eq!(refused.type_, "/problems/conflict");
    assert_eq!(service.get_order(pending.id).await.status, Pending);
}
