//! A store that fails on demand, and what the service answers then: 500 for an operation,
//! 503 for health, never the store's own error text.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use order_processor::{
    domain::{
        model::{
            Book, BookId, NewOrder, Order, OrderId, OrderQuery, Page, Recorded, StatusChange,
            Stock, StockAllocation,
        },
        storage::{Catalogue, OrderStore, StorageError, StorageResult},
    },
    generated::storage_service::client::types,
};
use serde_json::json;
use types::OrderStatus::{Pending, Rejected};
use uuid::Uuid;

use super::{
    open_store,
    problems::problem,
    service::{Service, as_json, book_input, new_order, start, start_over},
};

/// The text of the errors `Breakable` raises.
pub(super) const SECRET: &str = "secret-internal-detail";

/// A store that fails every call while `broken` is set, with errors whose text must not
/// reach the caller: the only way to make the service answer 500 and 503 on demand.
struct Breakable {
    inner: super::Store,
    broken: AtomicBool,
}

impl Breakable {
    fn check(&self) -> StorageResult<()> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StorageError::Failed(SECRET.into()))
        } else {
            Ok(())
        }
    }
}

impl OrderStore for Breakable {
    async fn create_order(&self, order: &NewOrder) -> StorageResult<Recorded> {
        self.check()?;
        self.inner.create_order(order).await
    }
    async fn order(&self, id: OrderId) -> StorageResult<Order> {
        self.check()?;
        self.inner.order(id).await
    }
    async fn orders(&self, query: &OrderQuery) -> StorageResult<Page<Order>> {
        self.check()?;
        self.inner.orders(query).await
    }
    async fn change_status(&self, id: OrderId, change: &StatusChange) -> StorageResult<Order> {
        self.check()?;
        self.inner.change_status(id, change).await
    }
    async fn cancel_order(&self, id: OrderId, reason: Option<&str>) -> StorageResult<Order> {
        self.check()?;
        self.inner.cancel_order(id, reason).await
    }
    async fn take_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        self.check()?;
        self.inner.take_stock(id).await
    }
    async fn return_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        self.check()?;
        self.inner.return_stock(id).await
    }
    async fn ping(&self) -> StorageResult<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable(SECRET.into()));
        }
        self.inner.ping().await
    }
}

/// Breaks the catalogue too: every operation of the service must answer its failure alike.
impl Catalogue for Breakable {
    async fn book(&self, id: &BookId) -> StorageResult<Book> {
        self.check()?;
        self.inner.book(id).await
    }
    async fn books(&self) -> StorageResult<Vec<Book>> {
        self.check()?;
        self.inner.books().await
    }
    async fn put_book(&self, book: &Book) -> StorageResult<Book> {
        self.check()?;
        self.inner.put_book(book).await
    }
    async fn set_stock(&self, id: &BookId, stock: Stock) -> StorageResult<Book> {
        self.check()?;
        self.inner.set_stock(id, stock).await
    }
}

async fn start_breakable() -> (Service, Arc<Breakable>) {
    let (inner, guard) = open_store().await;
    let store = Arc::new(Breakable {
        inner,
        broken: AtomicBool::new(false),
    });
    (start_over(store.clone(), guard).await, store)
}

// ---------------------------------------------------------------------------------------
// Failures of the store

#[tokio::test]
async fn a_failing_store_answers_500_problem_on_every_operation_without_its_error_text() {
    let (service, store) = start_breakable().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 1).await;
    store.broken.store(true, Ordering::SeqCst);
    let client = &service.client;

    let problems = [
        problem(client.list_books().send().await, 500),
        problem(client.get_book().id("book-1").send().await, 500),
        problem(
            client
                .put_book()
                .id("book-1")
                .body(book_input("T", 1, 1))
                .send()
                .await,
            500,
        ),
        problem(
            client
                .set_book_quantity()
                .id("book-1")
                .body(types::QuantityUpdate {
                    quantity: types::Stock(1),
                })
                .send()
                .await,
            500,
        ),
        problem(client.list_orders().user_id("user-1").send().await, 500),
        problem(
            client
                .create_order()
                .body(new_order(Uuid::new_v4(), "book-1", "user-1", 1))
                .send()
                .await,
            500,
        ),
        problem(client.get_order().id(order.id).send().await, 500),
        problem(service.change(order.id, Pending, Rejected).await, 500),
        problem(client.take_stock().id(order.id).send().await, 500),
        problem(client.return_stock().id(order.id).send().await, 500),
    ];

    for problem in problems {
        assert_eq!(problem.type_, "/problems/internal");
    }
}

// ---------------------------------------------------------------------------------------
// Health: up while the store answers, down while it does not

#[tokio::test]
async fn health_answers_200_up() {
    let service = start().await;

    let response = service.client.health().send().await.unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(as_json(&response.into_inner()), json!({"status": "up"}));
}

#[tokio::test]
async fn health_answers_503_problem_when_the_database_does_not_answer_and_200_once_it_does() {
    let (service, store) = start_breakable().await;
    store.broken.store(true, Ordering::SeqCst);

    let problem = problem(service.client.health().send().await, 503);

    assert_eq!(problem.type_, "/problems/storage-unavailable");
    store.broken.store(false, Ordering::SeqCst);
    let health = service.client.health().send().await.unwrap();
    assert_eq!(health.status, types::HealthStatus::Up);
}
