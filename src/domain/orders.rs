//! The flow that places an order, made safe: record it as pending, take the stock atomically,
//! confirm. Every step is idempotent per order id, so a retried request resumes the same order
//! instead of creating another, and stock is given back wherever an order does not end
//! confirmed.

use chrono::{DateTime, Utc};

use super::model::{
    IdempotencyKey, NewOrder, Order, OrderId, OrderQuery, OrderStatus, Page, PageLimit,
    StatusChange,
};
use super::storage::{OrderStore, StorageError};
use crate::{metrics, telemetry::ErrorChain};

/// A purchase that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub book_id: super::model::BookId,
    pub user_id: super::model::UserId,
    pub quantity: super::model::Quantity,
}

/// What became of an order: it ended `confirmed`, `rejected` or `failed`, and `order` says
/// which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub order: Order,
    /// An earlier request with the same idempotency key recorded the order; this answer
    /// repeats its outcome.
    pub replayed: bool,
}

/// Why an order did not reach an end.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    #[error("the book does not exist")]
    UnknownBook,
    #[error("the idempotency key was already used for another order")]
    IdempotencyKeyReused,
    /// The storage did not answer. The order, if it was recorded (then `order_id` names it),
    /// stays pending until a retry with the same key or the recovery finishes it.
    #[error("the storage is unavailable")]
    Unavailable {
        order_id: Option<OrderId>,
        #[source]
        source: StorageError,
    },
    #[error("unexpected storage error")]
    Internal(#[source] StorageError),
}

impl PlaceOrderError {
    /// The outcome label of an order that reached no end.
    fn outcome(&self) -> &'static str {
        match self {
            Self::UnknownBook => "unknown_book",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
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

/// Why an order could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelOrderError {
    #[error("no such order")]
    NotFound,
    /// Only a confirmed order can be cancelled.
    #[error("the order is {}, not confirmed", .0.as_str())]
    NotConfirmed(OrderStatus),
    #[error("the storage is unavailable")]
    Unavailable(#[source] StorageError),
    #[error("unexpected storage error")]
    Internal(#[source] StorageError),
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

/// Classifies a storage error met in the middle of the flow of order `id`, where the
/// expected refusals have already been handled.
fn unexpected(id: OrderId) -> impl FnOnce(StorageError) -> PlaceOrderError {
    move |err| {
        if err.is_retryable() {
            PlaceOrderError::Unavailable {
                order_id: Some(id),
                source: err,
            }
        } else {
            PlaceOrderError::Internal(err)
        }
    }
}

/// What one recovery round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Orders found pending and driven to an end.
    pub settled: usize,
    /// Orders found pending that stay pending for now, because the storage did not answer.
    pub left_pending: usize,
}

pub struct OrderService<S> {
    storage: S,
}

impl<S: OrderStore> OrderService<S> {
    pub fn new(storage: S) -> Self {
        Self { storage }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Places an order, or, when `key` names an order `user` already placed, resumes that
    /// order from where it stopped and answers with its one outcome. Counts the outcome.
    pub async fn place(
        &self,
        request: OrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<Placed, PlaceOrderError> {
        let placed = self.place_uncounted(request, key).await;
        match &placed {
            Ok(placed) => metrics::order_placed(placed.order.status.as_str(), placed.replayed),
            Err(err) => metrics::order_placed(err.outcome(), false),
        }
        placed
    }

    async fn place_uncounted(
        &self,
        request: OrderRequest,
        key: Option<&IdempotencyKey>,
    ) -> Result<Placed, PlaceOrderError> {
        let new = NewOrder {
            id: key.map_or_else(OrderId::generate, |key| key.order_id(&request.user_id)),
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
                // Whether the order was recorded is unknown, but its id is the one it has if
                // it was: the caller can look it up.
                err => unexpected(new.id)(err),
            })?;
        let order = self.settle(recorded.order).await?;
        Ok(Placed {
            order,
            replayed: key.is_some() && !recorded.created,
        })
    }

    /// Takes a pending order to its end, as the request that recorded it would have; answers
    /// at once with an order that already ended. Every step is idempotent or compare-and-set,
    /// so any number of requests and recovery rounds on any number of replicas may settle
    /// the same order at once and all reach the same end.
    async fn settle(&self, order: Order) -> Result<Order, PlaceOrderError> {
        if order.status != OrderStatus::Pending {
            return Ok(order);
        }
        match self.storage.take_stock(order.id).await {
            Ok(_) => self.finish(order.id, OrderStatus::Confirmed, None).await,
            // Also the answer to a retry after the first refusal: the storage recorded it.
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
                self.finish(order.id, OrderStatus::Rejected, Some(reason))
                    .await
            }
            // Another attempt ended the order, or gave its stock back on the way to `failed`.
            Err(StorageError::Conflict(_)) => {
                let current = self
                    .storage
                    .order(order.id)
                    .await
                    .map_err(unexpected(order.id))?;
                if current.status != OrderStatus::Pending {
                    return Ok(current);
                }
                let reason = "processing was interrupted and the stock was given back".to_owned();
                self.finish(order.id, OrderStatus::Failed, Some(reason))
                    .await
            }
            Err(err) if err.is_retryable() => Err(unexpected(order.id)(err)),
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
        self.storage
            .return_stock(id)
            .await
            .map_err(unexpected(id))?;
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
            Err(StorageError::Conflict(_)) => {
                self.storage.order(id).await.map_err(unexpected(id))?
            }
            Err(err) => return Err(unexpected(id)(err)),
        };
        if order.status == OrderStatus::Pending {
            return Err(PlaceOrderError::Internal(StorageError::Failed(
                format!("order {id} is still pending after its status changed").into(),
            )));
        }
        Ok(order)
    }

    /// Finds the orders that stayed pending since before `created_before` (their request
    /// died, timed out, or lost the storage) and settles each as a retry of its request would:
    /// stock taken or still in stock, it ends confirmed; stock short, rejected. So no order
    /// stays pending, and no stock stays held by an order that will never end.
    pub async fn recover(&self, created_before: DateTime<Utc>) -> Result<Recovery, StorageError> {
        let mut recovery = Recovery::default();
        let mut query = OrderQuery {
            user_id: None,
            status: Some(OrderStatus::Pending),
            created_before: Some(created_before),
            limit: PageLimit::MAX_PAGE,
            cursor: None,
        };
        loop {
            let page = self.storage.orders(&query).await?;
            for order in page.items {
                let id = order.id;
                let settled = self.settle(order).await;
                match &settled {
                    Ok(order) => {
                        tracing::info!(order_id = %id, status = order.status.as_str(), "recovered a pending order");
                        recovery.settled += 1;
                    }
                    Err(PlaceOrderError::Unavailable { source, .. }) => {
                        tracing::warn!(order_id = %id, error = %ErrorChain(source), "cannot recover a pending order yet");
                        recovery.left_pending += 1;
                    }
                    Err(err) => {
                        tracing::error!(order_id = %id, error = %ErrorChain(err), "cannot recover a pending order");
                        recovery.left_pending += 1;
                    }
                }
                metrics::order_recovered(match &settled {
                    Ok(order) => order.status.as_str(),
                    Err(err) => err.outcome(),
                });
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(recovery),
            }
        }
    }

    /// Cancels a confirmed order and gives its stock back, in one step of the storage, so a
    /// repeated or concurrent cancel answers the same cancelled order and gives nothing back
    /// twice. Counts the outcome.
    pub async fn cancel(
        &self,
        id: OrderId,
        reason: Option<&str>,
    ) -> Result<Order, CancelOrderError> {
        let cancelled = self.cancel_uncounted(id, reason).await;
        metrics::order_cancel(match &cancelled {
            Ok(_) => "cancelled",
            Err(CancelOrderError::NotFound) => "not_found",
            Err(CancelOrderError::NotConfirmed(_)) => "not_confirmed",
            Err(CancelOrderError::Unavailable(_)) => "unavailable",
            Err(CancelOrderError::Internal(_)) => "internal",
        });
        cancelled
    }

    async fn cancel_uncounted(
        &self,
        id: OrderId,
        reason: Option<&str>,
    ) -> Result<Order, CancelOrderError> {
        match self.storage.cancel_order(id, reason).await {
            Ok(order) => Ok(order),
            Err(StorageError::NotFound) => Err(CancelOrderError::NotFound),
            // The storage says why in words; the status it refused is read back to answer
            // in kind.
            Err(StorageError::Conflict(_)) => match self.storage.order(id).await {
                Ok(order) => Err(CancelOrderError::NotConfirmed(order.status)),
                Err(err) if err.is_retryable() => Err(CancelOrderError::Unavailable(err)),
                Err(err) => Err(CancelOrderError::Internal(err)),
            },
            Err(err) if err.is_retryable() => Err(CancelOrderError::Unavailable(err)),
            Err(err) => Err(CancelOrderError::Internal(err)),
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
