//! The port's answers that the SQL stores decide alike from the order and allocation they
//! have read: a repeated call answers as the first one did, and a call the order's state
//! forbids is a conflict. Each store reads under its own locks and moves the stock in its own
//! statements; what it concludes from what it read is written here once.

use crate::domain::model::{
    AllocationState, Order, OrderId, OrderStatus, StatusChange, StockAllocation,
};
use crate::domain::storage::StorageError;

/// Refuses a change that no order can make, before the database is asked.
pub(crate) fn check_change(change: &StatusChange) -> Result<(), StorageError> {
    if change.from.can_become(change.to) {
        return Ok(());
    }
    Err(StorageError::Refused(format!(
        "an order cannot move from {} to {}",
        change.from.as_str(),
        change.to.as_str()
    )))
}

/// The reason a change stores: a confirmed order has none.
pub(crate) fn stored_reason(change: &StatusChange) -> Option<&str> {
    match change.to {
        OrderStatus::Confirmed => None,
        _ => change.reason.as_deref(),
    }
}

/// What a status change answers from the order as it is, when that settles it: the order
/// itself when it is already in `change.to` (only pending moves, so this very change made
/// it, and a retry answers as the first call did), or a conflict when it is in another
/// status than `change.from` or, to be confirmed, does not hold its stock. `None`: the
/// change is to be made.
pub(crate) fn settled_change(
    id: OrderId,
    current: Order,
    change: &StatusChange,
) -> Result<Option<Order>, StorageError> {
    if current.status == change.to {
        return Ok(Some(current));
    }
    if current.status != change.from {
        return Err(StorageError::Conflict(format!(
            "order {id} is {}, not {}",
            current.status.as_str(),
            change.from.as_str()
        )));
    }
    if change.to == OrderStatus::Confirmed && !current.stock_held {
        return Err(StorageError::Conflict(format!(
            "order {id} does not hold its stock, so it cannot be confirmed"
        )));
    }
    Ok(None)
}

/// What a take answers before any stock moves, from the order and its allocation: the held
/// allocation again for a repeat, the first refusal again whatever the stock has become
/// since, and a conflict once the stock was given back or when the order is not pending.
/// `None`: the stock is to be taken.
pub(crate) fn settled_take(
    order: &Order,
    allocation: Option<StockAllocation>,
) -> Result<Option<StockAllocation>, StorageError> {
    let id = order.id;
    match allocation {
        Some(held) if held.state == AllocationState::Held => return Ok(Some(held)),
        Some(refused) if refused.state == AllocationState::Refused => {
            return Err(out_of_stock(refused.book_stock.get()));
        }
        Some(_) => {
            return Err(StorageError::Conflict(format!(
                "order {id} has given its stock back and cannot take it again"
            )));
        }
        None => {}
    }
    if order.status != OrderStatus::Pending {
        return Err(StorageError::Conflict(format!(
            "order {id} is {}; only a pending order takes stock",
            order.status.as_str()
        )));
    }
    Ok(None)
}

/// A take refused with the book's stock at the refusal.
pub(crate) fn out_of_stock(available: i64) -> StorageError {
    StorageError::OutOfStock {
        available: Some(available),
    }
}

/// Whether `order` is to be cancelled: not when it already is, since a repeat answers the
/// cancelled order as it is; an order in any other status than confirmed is a conflict.
pub(crate) fn is_to_cancel(order: &Order) -> Result<bool, StorageError> {
    match order.status {
        OrderStatus::Cancelled => Ok(false),
        OrderStatus::Confirmed => Ok(true),
        other => Err(StorageError::Conflict(format!(
            "order {} is {}; only a confirmed order can be cancelled",
            order.id,
            other.as_str()
        ))),
    }
}

/// The stock a confirmed order holds; a confirmed order without it is a broken record.
pub(crate) fn held_by_confirmed(
    id: OrderId,
    allocation: Option<StockAllocation>,
) -> Result<StockAllocation, StorageError> {
    allocation
        .filter(|allocation| allocation.state == AllocationState::Held)
        .ok_or_else(|| StorageError::Failed(format!("confirmed order {id} holds no stock").into()))
}

/// A confirmed order keeps its stock: only a cancel gives it back, with the status.
pub(crate) fn check_returnable(order: &Order) -> Result<(), StorageError> {
    if order.status == OrderStatus::Confirmed {
        return Err(StorageError::Conflict(format!(
            "order {} is confirmed and keeps its stock",
            order.id
        )));
    }
    Ok(())
}
