//! Orders and their stock: each change is one immediate transaction, and the stock only
//! moves through statements that the database checks, so that no reader of an older stock
//! level can oversell.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::domain::model::{
    AllocationState, BookId, NewOrder, Order, OrderId, OrderQuery, OrderStatus, Page, Recorded,
    StatusChange, Stock, StockAllocation, UserId,
};
use crate::domain::storage::{OrderStore, StorageError, StorageResult};

use super::rows::{ORDER_COLUMNS, allocation_from_row, now_micros, order_from_row, order_key};
use super::{OpError, SqliteStore};
use crate::storage::sql::{conflict, not_found};
use crate::storage::{cursor, rules};

fn select_order(conn: &Connection, key: &str) -> rusqlite::Result<Option<Order>> {
    conn.prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))?
        .query_row([key], order_from_row)
        .optional()
}

/// The order's allocation with its book's stock now.
fn select_allocation(conn: &Connection, key: &str) -> rusqlite::Result<Option<StockAllocation>> {
    conn.prepare_cached(
        "SELECT a.order_id, a.book_id, a.quantity, a.state, b.stock
         FROM allocations a JOIN books b ON b.id = a.book_id
         WHERE a.order_id = ?1",
    )?
    .query_row([key], allocation_from_row)
    .optional()
}

/// The book's stock; the foreign keys guarantee that an order's book exists, so a missing
/// one is a broken file and fails.
fn book_stock(conn: &Connection, book_id: &BookId) -> Result<Stock, OpError> {
    let stock: i64 = conn
        .prepare_cached("SELECT stock FROM books WHERE id = ?1")?
        .query_row([book_id.as_str()], |row| row.get(0))?;
    Ok(Stock::new(stock)?)
}

fn insert_allocation(
    conn: &Connection,
    order: &Order,
    state: AllocationState,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO allocations (order_id, book_id, quantity, state) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        order_key(order.id),
        order.book_id.as_str(),
        order.quantity.get(),
        state.as_str()
    ])?;
    Ok(())
}

fn set_stock_held(conn: &Connection, key: &str, held: bool) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE orders SET stock_held = ?2, updated_at_us = ?3 WHERE id = ?1")?
        .execute(params![key, held, now_micros()])?;
    Ok(())
}

fn create_order(conn: &mut Connection, new: &NewOrder) -> Result<Recorded, OpError> {
    let key = order_key(new.id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(existing) = select_order(&tx, &key)? {
        return if existing.matches(new) {
            Ok(Recorded {
                order: existing,
                created: false,
            })
        } else {
            Err(conflict(format!(
                "order {} already exists with another book, user or quantity",
                new.id
            )))
        };
    }
    // Price and currency are copied from the book inside the insert, so the order carries
    // the price the book had at that instant whatever happens to the book afterwards.
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO orders (id, book_id, user_id, quantity, status, reason, stock_held,
                                 unit_price, total_price, currency, created_at_us, updated_at_us)
             SELECT ?1, id, ?3, ?4, 'pending', NULL, 0, price, price * ?4, currency, ?5, ?5
             FROM books WHERE id = ?2
             RETURNING {ORDER_COLUMNS}"
        ))?
        .query_row(
            params![
                key,
                new.book_id.as_str(),
                new.user_id.as_str(),
                new.quantity.get(),
                now_micros()
            ],
            order_from_row,
        )
        .optional()?;
    let order = inserted.ok_or(StorageError::UnknownBook)?;
    tx.commit()?;
    Ok(Recorded {
        order,
        created: true,
    })
}

fn list_orders(conn: &Connection, query: &OrderQuery) -> Result<Page<Order>, OpError> {
    // Keyset pagination on the insertion sequence: a page starts strictly below the last
    // item seen, so orders created meanwhile (always above) can neither shift nor repeat it.
    let before = match &query.cursor {
        Some(cursor) => cursor::decode(cursor)?,
        None => i64::MAX,
    };
    let limit = query.limit.get() as usize;
    // Each filter is either in the statement or not, rather than `?n IS NULL OR ...`, so that
    // SQLite picks the index that fits: by user for a user's list, by status for recovery.
    let mut filters = vec!["seq < ?1"];
    if query.user_id.is_some() {
        filters.push("user_id = ?2");
    }
    if query.status.is_some() {
        filters.push("status = ?3");
    }
    if query.created_before.is_some() {
        filters.push("created_at_us < ?4");
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS}, seq FROM orders
         WHERE {}
         ORDER BY seq DESC
         LIMIT ?5",
        filters.join(" AND ")
    ))?;
    // SQLite binds every parameter a statement numbers up to its highest, used or not.
    // One more than asked tells whether a next page exists without a second query.
    let rows = stmt.query_map(
        params![
            before,
            query.user_id.as_ref().map(UserId::as_str),
            query.status.map(OrderStatus::as_str),
            query.created_before.map(|at| at.timestamp_micros()),
            i64::from(query.limit.get()) + 1
        ],
        |row| Ok((order_from_row(row)?, row.get::<_, i64>(12)?)),
    )?;
    let mut items = Vec::with_capacity(limit + 1);
    let mut last_seq = None;
    for row in rows {
        let (order, seq) = row?;
        if items.len() == limit {
            return Ok(Page {
                items,
                next_cursor: last_seq.map(cursor::encode),
            });
        }
        items.push(order);
        last_seq = Some(seq);
    }
    Ok(Page {
        items,
        next_cursor: None,
    })
}

fn change_status(
    conn: &mut Connection,
    id: OrderId,
    change: &StatusChange,
) -> Result<Order, OpError> {
    rules::check_change(change)?;
    let key = order_key(id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = select_order(&tx, &key)?.ok_or_else(not_found)?;
    if let Some(settled) = rules::settled_change(id, current, change)? {
        return Ok(settled);
    }
    // The conditions repeat the checks above in the database, so that the rule holds even
    // if this function is ever called outside its transaction.
    let updated = tx
        .prepare_cached(&format!(
            "UPDATE orders SET status = ?2, reason = ?3, updated_at_us = ?4
             WHERE id = ?1 AND status = ?5 AND (?2 <> 'confirmed' OR stock_held = 1)
             RETURNING {ORDER_COLUMNS}"
        ))?
        .query_row(
            params![
                key,
                change.to.as_str(),
                rules::stored_reason(change),
                now_micros(),
                change.from.as_str()
            ],
            order_from_row,
        )
        .optional()?;
    let order = updated
        .ok_or_else(|| conflict(format!("order {id} changed while its status was being set")))?;
    tx.commit()?;
    Ok(order)
}

fn take_stock(conn: &mut Connection, id: OrderId) -> Result<StockAllocation, OpError> {
    let key = order_key(id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let order = select_order(&tx, &key)?.ok_or_else(not_found)?;
    if let Some(held) = rules::settled_take(&order, select_allocation(&tx, &key)?)? {
        return Ok(held);
    }
    // Check and decrement in one statement: the database, not this process, decides
    // whether there is enough, so no reader of an older stock level can oversell.
    let quantity = i64::from(order.quantity.get());
    let taken: Option<i64> = tx
        .prepare_cached(
            "UPDATE books SET stock = stock - ?2 WHERE id = ?1 AND stock >= ?2 RETURNING stock",
        )?
        .query_row(params![order.book_id.as_str(), quantity], |row| row.get(0))
        .optional()?;
    let Some(stock) = taken else {
        // Recorded in the same transaction as the check, so that every later take of this
        // order answers the same refusal.
        insert_allocation(&tx, &order, AllocationState::Refused)?;
        let available = book_stock(&tx, &order.book_id)?.get();
        tx.commit()?;
        return Err(rules::out_of_stock(available).into());
    };
    insert_allocation(&tx, &order, AllocationState::Held)?;
    set_stock_held(&tx, &key, true)?;
    let book_stock = Stock::new(stock)?;
    tx.commit()?;
    Ok(StockAllocation {
        order_id: order.id,
        book_id: order.book_id,
        quantity: order.quantity,
        state: AllocationState::Held,
        book_stock,
    })
}

/// Gives a held allocation's stock back to its book and closes it, inside the caller's
/// transaction; the caller clears the order's `stock_held` in the same transaction, with
/// whatever else it changes on the order, so that no statement sees them disagree.
fn give_back(
    tx: &Connection,
    key: &str,
    held: StockAllocation,
) -> Result<StockAllocation, OpError> {
    let stock: i64 = tx
        .prepare_cached("UPDATE books SET stock = stock + ?2 WHERE id = ?1 RETURNING stock")?
        .query_row(params![held.book_id.as_str(), held.quantity.get()], |row| {
            row.get(0)
        })?;
    tx.prepare_cached("UPDATE allocations SET state = 'returned' WHERE order_id = ?1")?
        .execute([key])?;
    Ok(StockAllocation {
        state: AllocationState::Returned,
        book_stock: Stock::new(stock)?,
        ..held
    })
}

/// Cancels a confirmed order: its stock goes back and its status becomes `cancelled` in one
/// transaction, so neither can happen without the other.
fn cancel_order(
    conn: &mut Connection,
    id: OrderId,
    reason: Option<&str>,
) -> Result<Order, OpError> {
    let key = order_key(id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let order = select_order(&tx, &key)?.ok_or_else(not_found)?;
    if !rules::is_to_cancel(&order)? {
        return Ok(order);
    }
    let held = rules::held_by_confirmed(id, select_allocation(&tx, &key)?)?;
    give_back(&tx, &key, held)?;
    let cancelled = tx
        .prepare_cached(&format!(
            "UPDATE orders SET status = 'cancelled', stock_held = 0, reason = ?2,
                               updated_at_us = ?3
             WHERE id = ?1 AND status = 'confirmed'
             RETURNING {ORDER_COLUMNS}"
        ))?
        .query_row(params![key, reason, now_micros()], order_from_row)?;
    tx.commit()?;
    Ok(cancelled)
}

fn return_stock(conn: &mut Connection, id: OrderId) -> Result<StockAllocation, OpError> {
    let key = order_key(id);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let order = select_order(&tx, &key)?.ok_or_else(not_found)?;
    rules::check_returnable(&order)?;
    let allocation = match select_allocation(&tx, &key)? {
        Some(closed) if closed.state != AllocationState::Held => return Ok(closed),
        Some(held) => {
            let returned = give_back(&tx, &key, held)?;
            set_stock_held(&tx, &key, false)?;
            returned
        }
        None => {
            // Nothing to give back, but the closed allocation must exist: a take that was
            // sent before this call and arrives after it would otherwise still succeed.
            insert_allocation(&tx, &order, AllocationState::Returned)?;
            StockAllocation {
                book_stock: book_stock(&tx, &order.book_id)?,
                order_id: order.id,
                book_id: order.book_id,
                quantity: order.quantity,
                state: AllocationState::Returned,
            }
        }
    };
    tx.commit()?;
    Ok(allocation)
}

impl OrderStore for SqliteStore {
    async fn create_order(&self, order: &NewOrder) -> StorageResult<Recorded> {
        let order = order.clone();
        self.run(move |conn| create_order(conn, &order)).await
    }

    async fn order(&self, id: OrderId) -> StorageResult<Order> {
        self.run(move |conn| select_order(conn, &order_key(id))?.ok_or_else(not_found))
            .await
    }

    async fn orders(&self, query: &OrderQuery) -> StorageResult<Page<Order>> {
        let query = query.clone();
        self.run(move |conn| list_orders(conn, &query)).await
    }

    async fn change_status(&self, id: OrderId, change: &StatusChange) -> StorageResult<Order> {
        let change = change.clone();
        self.run(move |conn| change_status(conn, id, &change)).await
    }

    async fn take_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        self.run(move |conn| take_stock(conn, id)).await
    }

    async fn cancel_order(&self, id: OrderId, reason: Option<&str>) -> StorageResult<Order> {
        let reason = reason.map(str::to_owned);
        self.run(move |conn| cancel_order(conn, id, reason.as_deref()))
            .await
    }

    async fn return_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        self.run(move |conn| return_stock(conn, id)).await
    }

    async fn ping(&self) -> StorageResult<()> {
        self.run(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }
}
