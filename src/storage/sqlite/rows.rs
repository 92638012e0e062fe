//! Rows to domain values, each value checked by the domain's own parser, and the stored
//! forms of the keys and times that the statements bind.

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::FromSql;
use uuid::Uuid;

use crate::domain::model::{
    AllocationState, Book, BookDetails, BookId, Currency, InvalidValue, Money, Order, OrderId,
    OrderStatus, Quantity, Stock, StockAllocation, UserId,
};

pub(super) const BOOK_COLUMNS: &str = "id, title, author, price, currency, stock";

pub(super) const ORDER_COLUMNS: &str = "id, book_id, user_id, quantity, status, reason, \
     stock_held, unit_price, total_price, currency, created_at_us, updated_at_us";

pub(super) fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

pub(super) fn order_key(id: OrderId) -> String {
    id.0.as_hyphenated().to_string()
}

/// Reads column `idx` and checks it with the domain's own parser, so that a record read
/// back has passed the same rules as one that came in.
fn checked<T, U>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(T) -> Result<U, InvalidValue>,
) -> rusqlite::Result<U>
where
    T: FromSql,
{
    let raw: T = row.get(idx)?;
    parse(raw).map_err(|e| {
        let data_type = row
            .get_ref(idx)
            .map(|v| v.data_type())
            .unwrap_or(rusqlite::types::Type::Null);
        rusqlite::Error::FromSqlConversionFailure(idx, data_type, Box::new(e))
    })
}

fn timestamp(micros: i64) -> Result<DateTime<Utc>, InvalidValue> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| InvalidValue(format!("{micros} is not a time in microseconds")))
}

fn order_id(value: String) -> Result<OrderId, InvalidValue> {
    Uuid::parse_str(&value)
        .map(OrderId)
        .map_err(|e| InvalidValue(format!("order id {value:?}: {e}")))
}

/// A row of `BOOK_COLUMNS`.
pub(super) fn book_from_row(row: &Row<'_>) -> rusqlite::Result<Book> {
    let id = checked(row, 0, |v: String| BookId::parse(&v))?;
    let details = BookDetails {
        title: row.get(1)?,
        author: row.get(2)?,
        price: checked(row, 3, Money::price)?,
        currency: checked(row, 4, |v: String| Currency::parse(&v))?,
        stock: checked(row, 5, Stock::new)?,
    };
    Ok(details.with_id(id))
}

/// A row that starts with `ORDER_COLUMNS`.
pub(super) fn order_from_row(row: &Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: checked(row, 0, order_id)?,
        book_id: checked(row, 1, |v: String| BookId::parse(&v))?,
        user_id: checked(row, 2, |v: String| UserId::parse(&v))?,
        quantity: checked(row, 3, Quantity::new)?,
        status: checked(row, 4, |v: String| OrderStatus::parse(&v))?,
        reason: row.get(5)?,
        stock_held: row.get(6)?,
        unit_price: checked(row, 7, Money::price)?,
        total_price: checked(row, 8, Money::new)?,
        currency: checked(row, 9, |v: String| Currency::parse(&v))?,
        created_at: checked(row, 10, timestamp)?,
        updated_at: checked(row, 11, timestamp)?,
    })
}

/// A row of an allocation's `order_id, book_id, quantity, state`, then its book's stock.
pub(super) fn allocation_from_row(row: &Row<'_>) -> rusqlite::Result<StockAllocation> {
    Ok(StockAllocation {
        order_id: checked(row, 0, order_id)?,
        book_id: checked(row, 1, |v: String| BookId::parse(&v))?,
        quantity: checked(row, 2, Quantity::new)?,
        state: checked(row, 3, |v: String| AllocationState::parse(&v))?,
        book_stock: checked(row, 4, Stock::new)?,
    })
}
