//! The embedded store: the storage port over one SQLite file, so that the Order Processor runs
//! without a remote Storage Service. The database itself enforces the stock rules, so that
//! not even two processes sharing the file can oversell.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::FromSql;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior, params};
use uuid::Uuid;

use crate::domain::model::{
    AllocationState, Book, BookDetails, BookId, Currency, InvalidValue, Money, NewOrder, Order,
    OrderId, OrderQuery, OrderStatus, Page, Quantity, Recorded, StatusChange, Stock,
    StockAllocation, UserId,
};
use crate::domain::storage::{Catalogue, OrderStore, StorageError, StorageResult};

use super::rules;
use super::sql::{self, DatabaseError, conflict, not_found};
use super::{cursor, demo};

/// How long a statement waits for another connection's write lock before the call fails as
/// `Unavailable`: long enough to ride out any transaction of this store, short enough that a
/// stuck lock reaches the caller, who may retry.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps in order; `PRAGMA user_version` counts the steps a file has had. Append new
/// steps and never edit a released one: files in the field have already run it.
const MIGRATIONS: &[&str] = &[
    // 1: the catalogue, the orders and the stock each order took.
    "CREATE TABLE books (
        id       TEXT    NOT NULL PRIMARY KEY,
        title    TEXT    NOT NULL,
        author   TEXT    NOT NULL,
        price    INTEGER NOT NULL CHECK (price >= 0),
        currency TEXT    NOT NULL,
        -- The last line of defence against overselling: no statement can leave less than 0.
        stock    INTEGER NOT NULL CHECK (stock >= 0)
    ) STRICT;

    CREATE TABLE orders (
        -- AUTOINCREMENT never reuses a number, so a cursor keeps its place even after the
        -- newest order is deleted by hand.
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT    NOT NULL UNIQUE,
        book_id       TEXT    NOT NULL REFERENCES books (id),
        user_id       TEXT    NOT NULL,
        quantity      INTEGER NOT NULL CHECK (quantity > 0),
        status        TEXT    NOT NULL
                      CHECK (status IN ('pending', 'confirmed', 'rejected', 'failed')),
        reason        TEXT,
        stock_held    INTEGER NOT NULL CHECK (stock_held IN (0, 1)),
        unit_price    INTEGER NOT NULL CHECK (unit_price >= 0),
        total_price   INTEGER NOT NULL CHECK (total_price >= 0),
        currency      TEXT    NOT NULL,
        created_at_us INTEGER NOT NULL,
        updated_at_us INTEGER NOT NULL,
        CHECK (status <> 'confirmed' OR stock_held = 1)
    ) STRICT;

    CREATE INDEX orders_by_user ON orders (user_id, seq);

    -- One row per order, ever: a returned row stays as a tombstone so that a late or repeated
    -- take cannot take the stock again.
    CREATE TABLE allocations (
        order_id TEXT    NOT NULL PRIMARY KEY REFERENCES orders (id),
        book_id  TEXT    NOT NULL REFERENCES books (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        state    TEXT    NOT NULL CHECK (state IN ('held', 'returned'))
    ) STRICT;",
    // 2: a take refused for lack of stock is recorded as `refused`, so that a retry of the
    // order meets the same refusal; SQLite cannot change a CHECK in place, so the table is
    // copied. Recovery lists pending orders across users, by status.
    "CREATE TABLE allocations_v2 (
        order_id TEXT    NOT NULL PRIMARY KEY REFERENCES orders (id),
        book_id  TEXT    NOT NULL REFERENCES books (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        state    TEXT    NOT NULL CHECK (state IN ('held', 'returned', 'refused'))
    ) STRICT;
    INSERT INTO allocations_v2 (order_id, book_id, quantity, state)
        SELECT order_id, book_id, quantity, state FROM allocations;
    DROP TABLE allocations;
    ALTER TABLE allocations_v2 RENAME TO allocations;

    CREATE INDEX orders_by_status ON orders (status, seq);",
    // 3: a confirmed order can be cancelled. The status CHECK changes, so the table is
    // copied; `migrate` turns foreign keys off around it, or dropping the old table would
    // trip the allocations' references to it.
    "CREATE TABLE orders_v3 (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT    NOT NULL UNIQUE,
        book_id       TEXT    NOT NULL REFERENCES books (id),
        user_id       TEXT    NOT NULL,
        quantity      INTEGER NOT NULL CHECK (quantity > 0),
        status        TEXT    NOT NULL
                      CHECK (status IN ('pending', 'confirmed', 'rejected', 'failed', 'cancelled')),
        reason        TEXT,
        stock_held    INTEGER NOT NULL CHECK (stock_held IN (0, 1)),
        unit_price    INTEGER NOT NULL CHECK (unit_price >= 0),
        total_price   INTEGER NOT NULL CHECK (total_price >= 0),
        currency      TEXT    NOT NULL,
        created_at_us INTEGER NOT NULL,
        updated_at_us INTEGER NOT NULL,
        CHECK (status <> 'confirmed' OR stock_held = 1),
        CHECK (status <> 'cancelled' OR stock_held = 0)
    ) STRICT;
    INSERT INTO orders_v3 (seq, id, book_id, user_id, quantity, status, reason, stock_held,
                           unit_price, total_price, currency, created_at_us, updated_at_us)
        SELECT seq, id, book_id, user_id, quantity, status, reason, stock_held,
               unit_price, total_price, currency, created_at_us, updated_at_us
        FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_v3 RENAME TO orders;
    CREATE INDEX orders_by_user ON orders (user_id, seq);
    CREATE INDEX orders_by_status ON orders (status, seq);",
];

const BOOK_COLUMNS: &str = "id, title, author, price, currency, stock";

const ORDER_COLUMNS: &str = "id, book_id, user_id, quantity, status, reason, stock_held, \
     unit_price, total_price, currency, created_at_us, updated_at_us";

/// The storage port over a SQLite file. Clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    /// One connection: SQLite admits one writer at a time anyway, and a single connection
    /// makes this process's operations queue here instead of on the busy timeout.
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it and its parent directories if needed, and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> StorageResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::Failed(format!("cannot create {}: {e}", parent.display()).into())
            })?;
        }
        let opening = |e: rusqlite::Error| match e.classify() {
            StorageError::Failed(e) => StorageError::Failed(
                format!("cannot open the SQLite database {}: {e}", path.display()).into(),
            ),
            other => other,
        };
        let mut conn = Connection::open(path).map_err(opening)?;
        configure(&mut conn).map_err(opening)?;
        migrate(&mut conn).map_err(|e| match e {
            sql::OpError::Database(e) => opening(e),
            sql::OpError::Storage(e) => e,
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_owned()),
        })
    }

    /// Loads the demo catalogue into a store that has no book yet; answers whether it did.
    /// A store that has any book is left alone, so that restarts never undo sales or
    /// restocking.
    pub async fn seed_demo_catalogue(&self) -> StorageResult<bool> {
        self.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let has_books: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM books)", [], |r| r.get(0))?;
            if has_books {
                return Ok(false);
            }
            {
                let mut insert = tx.prepare(
                    "INSERT INTO books (id, title, author, price, currency, stock)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for book in &demo::CATALOGUE {
                    insert.execute(params![
                        book.id,
                        book.title,
                        book.author,
                        book.price_cents,
                        demo::CURRENCY,
                        book.stock
                    ])?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Runs `op` on the connection off the async threads, since every SQLite call blocks.
    async fn run<T, F>(&self, op: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, OpError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic inside an operation poisons the lock. Its transaction has rolled back,
            // but the bug that panicked is still there: fail loudly, and let the health check
            // report it, rather than go on as if nothing happened.
            let mut conn = conn.lock().map_err(|_| {
                StorageError::Failed(
                    "the SQLite connection is unusable: an earlier operation panicked".into(),
                )
            })?;
            op(&mut conn).map_err(StorageError::from)
        })
        .await;
        joined.unwrap_or_else(|e| Err(StorageError::Failed(Box::new(e))))
    }
}

/// Settings that live on the connection, not in the file, so every open sets them again.
fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers go on while the one writer writes. With WAL, NORMAL still keeps the
    // file consistent through any crash; only a power cut may lose the last few commits, a
    // fair price for not syncing the disk on every commit.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "SQLite did not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Off by default in SQLite, per connection.
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Applies the schema steps this file has not had, all in one transaction, so that a crash
/// or a second process opening the file at the same time never leaves half a schema.
fn migrate(conn: &mut Connection) -> Result<(), OpError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let known = MIGRATIONS.len();
    let done = sql::steps_done(version, known)?;
    if done == known {
        return Ok(());
    }
    drop(tx);
    // Steps that copy a table drop the old one, which foreign keys would refuse while rows
    // refer to it. The switch only takes effect outside a transaction, and the check below
    // proves, before the commit, that the copies left every reference whole.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = apply(conn, done, known);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

fn apply(conn: &mut Connection, done: usize, known: usize) -> Result<(), OpError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated the file since it was read above.
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if usize::try_from(version).ok() != Some(done) {
        return Ok(());
    }
    for step in &MIGRATIONS[done..] {
        tx.execute_batch(step)?;
    }
    let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| {
        row.get(0)
    })?;
    if broken > 0 {
        return Err(StorageError::Failed(
            format!("migrating left {broken} broken references; nothing was changed").into(),
        )
        .into());
    }
    // `known` is the length of a small constant table: it always fits.
    tx.pragma_update(None, "user_version", known as i64)?;
    tx.commit()?;
    Ok(())
}

type OpError = sql::OpError<rusqlite::Error>;

/// Busy and locked mean another connection holds the file for now: worth a retry. Anything
/// else from SQLite is a bug, a broken file or a full disk, which a retry does not mend.
impl DatabaseError for rusqlite::Error {
    fn classify(self) -> StorageError {
        match self.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StorageError::Unavailable(Box::new(self))
            }
            _ => StorageError::Failed(Box::new(self)),
        }
    }
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn order_key(id: OrderId) -> String {
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
fn book_from_row(row: &Row<'_>) -> rusqlite::Result<Book> {
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
fn order_from_row(row: &Row<'_>) -> rusqlite::Result<Order> {
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
    .query_row([key], |row| {
        Ok(StockAllocation {
            order_id: checked(row, 0, order_id)?,
            book_id: checked(row, 1, |v: String| BookId::parse(&v))?,
            quantity: checked(row, 2, Quantity::new)?,
            state: checked(row, 3, |v: String| AllocationState::parse(&v))?,
            book_stock: checked(row, 4, Stock::new)?,
        })
    })
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

impl Catalogue for SqliteStore {
    async fn book(&self, id: &BookId) -> StorageResult<Book> {
        let id = id.clone();
        self.run(move |conn| {
            conn.prepare_cached(&format!("SELECT {BOOK_COLUMNS} FROM books WHERE id = ?1"))?
                .query_row([id.as_str()], book_from_row)
                .optional()?
                .ok_or_else(not_found)
        })
        .await
    }

    async fn books(&self) -> StorageResult<Vec<Book>> {
        self.run(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {BOOK_COLUMNS} FROM books ORDER BY id"))?;
            let books = stmt
                .query_map([], book_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(books)
        })
        .await
    }

    async fn put_book(&self, book: &Book) -> StorageResult<Book> {
        let book = book.clone();
        self.run(move |conn| {
            // An upsert, not INSERT OR REPLACE: replacing deletes the row first, which the
            // orders' foreign keys forbid once a book has been ordered.
            let stored = conn
                .prepare_cached(&format!(
                    "INSERT INTO books (id, title, author, price, currency, stock)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET
                         title = excluded.title,
                         author = excluded.author,
                         price = excluded.price,
                         currency = excluded.currency,
                         stock = excluded.stock
                     RETURNING {BOOK_COLUMNS}"
                ))?
                .query_row(
                    params![
                        book.id.as_str(),
                        book.details.title,
                        book.details.author,
                        book.details.price.minor_units(),
                        book.details.currency.as_str(),
                        book.details.stock.get()
                    ],
                    book_from_row,
                )?;
            Ok(stored)
        })
        .await
    }

    async fn set_stock(&self, id: &BookId, stock: Stock) -> StorageResult<Book> {
        let id = id.clone();
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "UPDATE books SET stock = ?2 WHERE id = ?1 RETURNING {BOOK_COLUMNS}"
            ))?
            .query_row(params![id.as_str(), stock.get()], book_from_row)
            .optional()?
            .ok_or_else(not_found)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system's temp dir, removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!("sqlite-store-test-{}", Uuid::new_v4())))
        }

        /// A database path two directories down, so that `open` has to create them.
        fn db(&self) -> PathBuf {
            self.0.join("data").join("orders.db")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn book_id(id: &str) -> BookId {
        BookId::parse(id).unwrap()
    }

    fn book(id: &str, price: i64, stock: i64) -> Book {
        BookDetails {
            title: format!("Title of {id}"),
            author: "An Author".to_owned(),
            price: Money::new(price).unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            stock: Stock::new(stock).unwrap(),
        }
        .with_id(book_id(id))
    }

    fn new_order(book: &str, user: &str, quantity: i64) -> NewOrder {
        NewOrder {
            id: OrderId::generate(),
            book_id: book_id(book),
            user_id: UserId::parse(user).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
        }
    }

    /// A store on a fresh file with `book-1` at 12.50 EUR and `stock` copies.
    async fn store_with_book(stock: i64) -> (TempDir, SqliteStore) {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.db()).unwrap();
        store.put_book(&book("book-1", 1250, stock)).await.unwrap();
        (dir, store)
    }

    async fn stock_of(store: &SqliteStore, id: &str) -> i64 {
        store.book(&book_id(id)).await.unwrap().details.stock.get()
    }

    async fn place(store: &SqliteStore, quantity: i64) -> Order {
        store
            .create_order(&new_order("book-1", "user-1", quantity))
            .await
            .unwrap()
            .order
    }

    #[tokio::test]
    async fn open_creates_the_directories_and_puts_the_file_in_wal_mode() {
        let dir = TempDir::new();
        let store = SqliteStore::open(&dir.db()).unwrap();
        assert!(dir.db().exists());
        store.ping().await.unwrap();
        let raw = Connection::open(dir.db()).unwrap();
        let mode: String = raw
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn migrations_can_run_again_on_the_same_file_and_keep_its_data() {
        let dir = TempDir::new();
        let first = SqliteStore::open(&dir.db()).unwrap();
        first.put_book(&book("book-1", 1250, 4)).await.unwrap();
        let order = place(&first, 1).await;
        drop(first);

        let second = SqliteStore::open(&dir.db()).unwrap();
        let third = SqliteStore::open(&dir.db()).unwrap();
        assert_eq!(stock_of(&second, "book-1").await, 4);
        assert_eq!(third.order(order.id).await.unwrap(), order);
        let raw = Connection::open(dir.db()).unwrap();
        let version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_file_from_a_newer_schema_is_refused_rather_than_misread() {
        let dir = TempDir::new();
        drop(SqliteStore::open(&dir.db()).unwrap());
        Connection::open(dir.db())
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&dir.db()),
            Err(StorageError::Failed(_))
        ));
    }

    #[tokio::test]
    async fn a_file_of_the_first_schema_is_migrated_with_its_orders_and_allocations() {
        let dir = TempDir::new();
        std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
        {
            let raw = Connection::open(dir.db()).unwrap();
            raw.execute_batch(MIGRATIONS[0]).unwrap();
            raw.execute_batch(
                "INSERT INTO books VALUES ('book-1', 'T', 'A', 1250, 'EUR', 8);
                 INSERT INTO orders (id, book_id, user_id, quantity, status, reason, stock_held,
                                     unit_price, total_price, currency, created_at_us, updated_at_us)
                 VALUES ('0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f', 'book-1', 'user-1', 2,
                         'confirmed', NULL, 1, 1250, 2500, 'EUR', 1, 1);
                 INSERT INTO allocations VALUES
                     ('0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f', 'book-1', 2, 'held');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&dir.db()).unwrap();
        let id = OrderId(Uuid::parse_str("0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f").unwrap());
        assert_eq!(
            store.order(id).await.unwrap().status,
            OrderStatus::Confirmed
        );
        assert_eq!(
            store.cancel_order(id, None).await.unwrap().status,
            OrderStatus::Cancelled
        );
        assert_eq!(stock_of(&store, "book-1").await, 10);
        // New orders are numbered after the old ones, and foreign keys hold again.
        let later = place(&store, 1).await;
        let page = store
            .orders(&OrderQuery {
                user_id: Some(UserId::parse("user-1").unwrap()),
                status: None,
                created_before: None,
                limit: crate::domain::model::PageLimit::new(10).unwrap(),
                cursor: None,
            })
            .await
            .unwrap();
        assert_eq!(page.items[0], later);
        assert_eq!(page.items.len(), 2);
        let raw = Connection::open(dir.db()).unwrap();
        let version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let foreign_keys: i64 = store
            .run(|conn| Ok(conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(foreign_keys, 1);
    }

    #[tokio::test]
    async fn the_database_itself_refuses_negative_stock() {
        let (dir, _store) = store_with_book(1).await;
        let raw = Connection::open(dir.db()).unwrap();
        raw.busy_timeout(BUSY_TIMEOUT).unwrap();
        let err = raw
            .execute("UPDATE books SET stock = stock - 2 WHERE id = 'book-1'", [])
            .unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(ErrorCode::ConstraintViolation)
        );
    }

    /// Every order is taken twice, at once, half through each of two stores on the same file,
    /// so the guarantee rests on the database and not on one process's lock.
    #[test]
    fn busy_and_locked_databases_are_retryable_and_other_errors_are_not() {
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            assert!(e.classify().is_retryable());
        }
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        );
        assert!(matches!(e.classify(), StorageError::Failed(_)));
        assert!(matches!(
            rusqlite::Error::QueryReturnedNoRows.classify(),
            StorageError::Failed(_)
        ));
    }

    #[tokio::test]
    async fn a_write_lock_held_elsewhere_past_the_timeout_is_unavailable() {
        let (dir, store) = store_with_book(10).await;
        store
            .run(|conn| {
                conn.busy_timeout(Duration::from_millis(50))?;
                Ok(())
            })
            .await
            .unwrap();
        let raw = Connection::open(dir.db()).unwrap();
        raw.execute_batch("BEGIN IMMEDIATE").unwrap();
        let order = new_order("book-1", "user-1", 1);
        let result = store.create_order(&order).await;
        assert!(
            matches!(result, Err(StorageError::Unavailable(_))),
            "{result:?}"
        );
        raw.execute_batch("ROLLBACK").unwrap();
        assert!(store.create_order(&order).await.unwrap().created);
    }

    #[tokio::test]
    async fn a_panic_in_an_operation_fails_the_call_and_later_ones_instead_of_panicking() {
        let (_dir, store) = store_with_book(10).await;
        let panicked = store
            .run(|_conn| -> Result<(), OpError> { panic!("a bug") })
            .await;
        assert!(matches!(panicked, Err(StorageError::Failed(_))));
        assert!(matches!(store.ping().await, Err(StorageError::Failed(_))));
    }

    #[tokio::test]
    async fn a_corrupt_record_fails_instead_of_being_trusted() {
        let (dir, store) = store_with_book(10).await;
        let order = place(&store, 1).await;
        let raw = Connection::open(dir.db()).unwrap();
        raw.execute("UPDATE orders SET user_id = 'a/b'", [])
            .unwrap();
        assert!(matches!(
            store.order(order.id).await,
            Err(StorageError::Failed(_))
        ));
    }
}
