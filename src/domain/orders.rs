//! The flow that places an order, made safe: record it as pending, take the stock atomically,
//! confirm. Every step is idempotent per order id, so a retried request resumes the same order
//! instead of creating another, and stock is given back wherever an order does not end
//! confirmed.

use super::model::{
    IdempotencyKey, NewOrder, Order, OrderId, OrderQuery, OrderStatus, Page, StatusChange,
};
use super::storage::{Storage, StorageError};
use crate::telemetry::ErrorChain;

/// A purchase that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub book_id: super::model::BookId,
    pub user_id: super::model::UserId,
    pub quantity: super::model::Quantity,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    /// Recorded as rejected; no stock was taken.
    #[error("order {order_id} is rejected: {reason}")]
    OutOfStock { order_id: OrderId, reason: String },
    #[error("the book does not exist")]
    UnknownBook,
    #[error("the idempotency key was already used for another order")]
    IdempotencyKeyReused,
    /// The storage did not answer; the order, if recorded, stays pending and a retry with the
    /// same idempotency key resumes it.
    #[error("the storage is unavailable")]
    Unavailable(#[source] StorageError),
    /// An earlier attempt ended this order as failed.
    #[error("order {order_id} failed: {reason}")]
    Failed { order_id: OrderId, reason: String },
    #[error("unexpected storage error")]
    Internal(#[source] StorageError),
}

/// Why an order could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadOrderError {
    #[error("no such order")]
    NotFound,
    #[error("the storage is unavailable")]
    Unavailable(#[source] StorageError),
    #[error("unexpected storage error")]
    Internal(#[source] StorageError),
}

impl From<StorageError> for ReadOrderError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound => Self::NotFound,
            err if err.is_retryable() => Self::Unavailable(err),
            err => Self::Internal(err),
        }
    }
}

/// Why a list of orders could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListOrdersError {
    #[error("the cursor cannot be read")]
    InvalidCursor,
    #[error("the storage is unavailable")]
    Unavailable(#[source] StorageError),
    #[error("unexpected storage error")]
    Internal(#[source] StorageError),
}

impl From<StorageError> for ListOrdersError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::InvalidCursor => Self::InvalidCursor,
            err if err.is_retryable() => Self::Unavailable(err),
            err => Self::Internal(err),
        }
    }
}

/// Classifies a storage error met in the middle of the flow, where the expected refusals
/// have already been handled.
fn unexpected(err: StorageError) -> PlaceOrderError {
    if err.is_retryable() {
        PlaceOrderError::Unavailable(err)
    } else {
        PlaceOrderError::Internal(err)
    }
}

pub struct OrderService<S> {
    storage: S,
}

impl<S: Storage> OrderService<S> {
    pub fn new(storage: S) -> Self {
        Self { storage }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub async fn place(
        &self,
        request: OrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<Order, PlaceOrderError> {
        let new = NewOrder {
            id: key.map_or_else(OrderId::generate, IdempotencyKey::order_id),
            book_id: request.book_id,
            user_id: request.user_id,
            quantity: request.quantity,
        };
        let recorded = self
            .storage
            .create_order(&new)
            .await
            .map_err(|err| match err {
                StorageError::UnknownBook => PlaceOrderError::UnknownBook,
                // Ids without a key are random, so only a reused key can name another order.
                StorageError::Conflict(_) if key.is_some() => PlaceOrderError::IdempotencyKeyReused,
                err => unexpected(err),
            })?;
        self.settle(recorded.order).await
    }

    /// Takes a pending order to its end; answers at once for an order that already ended,
    /// as a replayed request finds it.
    async fn settle(&self, order: Order) -> Result<Order, PlaceOrderError> {
        match order.status {
            OrderStatus::Confirmed => return Ok(order),
            OrderStatus::Rejected => return Err(rejected(order)),
            OrderStatus::Failed => return Err(failed(order)),
            OrderStatus::Pending => {}
        }
        match self.storage.take_stock(order.id).await {
            Ok(_) => self.finish(order.id, OrderStatus::Confirmed, None).await,
            Err(StorageError::OutOfStock { available }) => {
                let reason = match available {
                    Some(available) => format!(
                        "book {} has {} in stock; the order asked for {}",
                        order.book_id,
                        copies(available),
                        order.quantity.get()
                    ),
                    None => format!(
                        "book {} has fewer than the {} copies the order asked for in stock",
                        order.book_id,
                        order.quantity.get()
                    ),
                };
                self.give_up(order.id, OrderStatus::Rejected, reason).await
            }
            // The allocation was closed by an earlier attempt that did not finish.
            Err(StorageError::Conflict(_)) => {
                let current = self.storage.order(order.id).await.map_err(unexpected)?;
                if current.status != OrderStatus::Pending {
                    return Box::pin(self.settle(current)).await;
                }
                let reason = "processing was interrupted and the stock was given back".to_owned();
                self.give_up(order.id, OrderStatus::Failed, reason).await
            }
            Err(err) if err.is_retryable() => Err(PlaceOrderError::Unavailable(err)),
            Err(err) => {
                tracing::error!(order_id = %order.id, error = %ErrorChain(&err), "taking stock failed");
                self.give_up(
                    order.id,
                    OrderStatus::Failed,
                    "the stock could not be taken".to_owned(),
                )
                .await
            }
        }
    }

    /// Ends an order without its stock: gives back whatever it holds, then records why.
    async fn give_up(
        &self,
        id: OrderId,
        to: OrderStatus,
        reason: String,
    ) -> Result<Order, PlaceOrderError> {
        self.storage.return_stock(id).await.map_err(unexpected)?;
        self.finish(id, to, Some(reason)).await
    }

    async fn finish(
        &self,
        id: OrderId,
        to: OrderStatus,
        reason: Option<String>,
    ) -> Result<Order, PlaceOrderError> {
        let change = StatusChange {
            from: OrderStatus::Pending,
            to,
            reason,
        };
        let order = match self.storage.change_status(id, &change).await {
            Ok(order) => order,
            // Another attempt on the same order got there first: its outcome stands.
            Err(StorageError::Conflict(_)) => self.storage.order(id).await.map_err(unexpected)?,
            Err(err) => return Err(unexpected(err)),
        };
        match order.status {
            OrderStatus::Confirmed => Ok(order),
            OrderStatus::Rejected => Err(rejected(order)),
            OrderStatus::Failed => Err(failed(order)),
            OrderStatus::Pending => Err(PlaceOrderError::Internal(StorageError::Failed(
                format!("order {id} is still pending after its status changed").into(),
            ))),
        }
    }

    pub async fn order(&self, id: OrderId) -> Result<Order, ReadOrderError> {
        Ok(self.storage.order(id).await?)
    }

    pub async fn orders(&self, query: &OrderQuery) -> Result<Page<Order>, ListOrdersError> {
        Ok(self.storage.orders(query).await?)
    }
}

/// `1 copy`, `3 copies`.
pub fn copies(count: i64) -> String {
    if count == 1 {
        "1 copy".to_owned()
    } else {
        format!("{count} copies")
    }
}

fn rejected(order: Order) -> PlaceOrderError {
    PlaceOrderError::OutOfStock {
        order_id: order.id,
        reason: order
            .reason
            .unwrap_or_else(|| "not enough stock".to_owned()),
    }
}

fn failed(order: Order) -> PlaceOrderError {
    PlaceOrderError::Failed {
        order_id: order.id,
        reason: order
            .reason
            .unwrap_or_else(|| "processing failed".to_owned()),
    }
}
