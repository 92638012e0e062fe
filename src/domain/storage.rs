//! The storage port: what the order flow needs from the Storage Service. Three adapters
//! implement it: the embedded SQLite store, the HTTP client of a remote Storage Service, and
//! the PostgreSQL store that the reference Storage Service uses when replicas share a database.

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

/// The operations of `openapi/storage-service.yaml`, over domain types.
pub trait Storage: Send + Sync + 'static {
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
    fn book(&self, id: &BookId) -> impl Future<Output = StorageResult<Book>> + Send;
    fn books(&self) -> impl Future<Output = StorageResult<Vec<Book>>> + Send;
    fn put_book(&self, book: &Book) -> impl Future<Output = StorageResult<Book>> + Send;
    fn set_stock(
        &self,
        id: &BookId,
        stock: Stock,
    ) -> impl Future<Output = StorageResult<Book>> + Send;
    /// Answers when the storage can serve requests.
    fn ping(&self) -> impl Future<Output = StorageResult<()>> + Send;
}
