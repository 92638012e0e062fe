//! The storage port, in two parts by who uses them: [`OrderStore`], what the order flow needs
//! from the Storage Service, and [`Catalogue`], the books themselves, which only the reference
//! Storage Service serves and tests set up. Three adapters implement them: the embedded SQLite
//! store, the HTTP client of a remote Storage Service, and the PostgreSQL store that the
//! reference Storage Service uses when replicas share a database.

use std::future::Future;

use super::model::{
    Book, BookId, NewOrder, Order, OrderId, OrderQuery, Page, Recorded, StatusChange, Stock,
    StockAllocation,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every way a storage call can fail, classified once so that callers decide by kind:
/// not found, conflict, retryable (`Unavailable`) or permanent (`Failed`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("the book does not exist")]
    UnknownBook,
    /// With the copies in stock at the refusal, when the storage tells.
    #[error("not enough stock")]
    OutOfStock { available: Option<i64> },
    /// The change contradicts the stored state: another order under the same id, a status
    /// that is not the expected one, stock already given back.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the cursor is not one this storage issued")]
    InvalidCursor,
    /// A request the storage refused as malformed or not allowed.
    #[error("refused: {0}")]
    Refused(String),
    /// Transient: the storage did not answer, or answered that it is overloaded or down.
    /// Safe to retry, since every operation of the port is idempotent.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// Permanent and unexpected: a bug, a corrupt record, an answer that breaks the contract.
    #[error("storage failed")]
    Failed(#[source] BoxError),
}

impl StorageError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// The operations of `openapi/storage-service.yaml` that the order flow calls, over domain
/// types. An order never reads the catalogue: it records the book's price and takes its stock
/// inside these operations, so that both are decided by the storage in one step.
pub trait OrderStore: Send + Sync + 'static {
    /// Records a pending order at the book's current price; idempotent per order id.
    fn create_order(
        &self,
        order: &NewOrder,
    ) -> impl Future<Output = StorageResult<Recorded>> + Send;
    fn order(&self, id: OrderId) -> impl Future<Output = StorageResult<Order>> + Send;
    /// Orders newest first, by creation; a cursor stays stable while orders are added.
    fn orders(&self, query: &OrderQuery)
    -> impl Future<Output = StorageResult<Page<Order>>> + Send;
    /// Moves an order only if it is in `change.from`.
    fn change_status(
        &self,
        id: OrderId,
        change: &StatusChange,
    ) -> impl Future<Output = StorageResult<Order>> + Send;
    /// Cancels a confirmed order and gives its stock back, in one step; a cancelled order is
    /// answered as it is. Any other status is a `Conflict`.
    fn cancel_order(
        &self,
        id: OrderId,
        reason: Option<&str>,
    ) -> impl Future<Output = StorageResult<Order>> + Send;
    /// Takes the order's stock atomically, never below zero, at most once.
    fn take_stock(
        &self,
        id: OrderId,
    ) -> impl Future<Output = StorageResult<StockAllocation>> + Send;
    /// Gives the order's stock back, at most once, and closes its allocation.
    fn return_stock(
        &self,
        id: OrderId,
    ) -> impl Future<Output = StorageResult<StockAllocation>> + Send;
    /// Answers when the storage can serve requests.
    fn ping(&self) -> impl Future<Output = StorageResult<()>> + Send;
}

/// The catalogue operations of `openapi/storage-service.yaml`: the books, their prices and
/// their stock levels. Kept apart from [`OrderStore`] because the Order Processor never calls
/// them: the reference Storage Service serves them, and tests set up and check books through
/// them.
pub trait Catalogue: Send + Sync + 'static {
    fn book(&self, id: &BookId) -> impl Future<Output = StorageResult<Book>> + Send;
    /// Every book, by id.
    fn books(&self) -> impl Future<Output = StorageResult<Vec<Book>>> + Send;
    /// Creates the book or replaces every detail of it, its stock included.
    fn put_book(&self, book: &Book) -> impl Future<Output = StorageResult<Book>> + Send;
    /// Sets the book's stock to an absolute level; an unknown book is `NotFound`.
    fn set_stock(
        &self,
        id: &BookId,
        stock: Stock,
    ) -> impl Future<Output = StorageResult<Book>> + Send;
}
