//! The schema of the SQLite file, the steps that bring an older file up to date, and the
//! settings each connection needs.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, config::DbConfig};

use crate::domain::storage::StorageError;

use super::OpError;
use crate::storage::sql;

/// How long a statement waits for another connection's write lock before the call fails as
/// `Unavailable`: long enough to ride out any transaction of this store, short enough that a
/// stuck lock reaches the caller, who may retry.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema steps in order; `PRAGMA user_version` counts the steps a file has had. Append new
/// steps and never edit a released one: files in the field have already run it.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 4: the status and state CHECKs compare one value at a time. SQLite evaluates
    // `x IN (three or more constants)` by building a temporary index, on every insert and
    // every status change: a tenth of the instructions of an order's three calls, under
    // callgrind. The tables are copied, as in 3; the orders' sequence is carried over, so that
    // no number is given out twice.
    "CREATE TABLE orders_v4 (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT    NOT NULL UNIQUE,
        book_id       TEXT    NOT NULL REFERENCES books (id),
        user_id       TEXT    NOT NULL,
        quantity      INTEGER NOT NULL CHECK (quantity > 0),
        status        TEXT    NOT NULL
                      CHECK (status = 'pending' OR status = 'confirmed' OR status = 'rejected'
                             OR status = 'failed' OR status = 'cancelled'),
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
    INSERT INTO orders_v4 (seq, id, book_id, user_id, quantity, status, reason, stock_held,
                           unit_price, total_price, currency, created_at_us, updated_at_us)
        SELECT seq, id, book_id, user_id, quantity, status, reason, stock_held,
               unit_price, total_price, currency, created_at_us, updated_at_us
        FROM orders;
    DELETE FROM sqlite_sequence WHERE name = 'orders_v4';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'orders_v4', seq FROM sqlite_sequence WHERE name = 'orders';
    DROP TABLE orders;
    ALTER TABLE orders_v4 RENAME TO orders;
    CREATE INDEX orders_by_user ON orders (user_id, seq);
    CREATE INDEX orders_by_status ON orders (status, seq);

    CREATE TABLE allocations_v4 (
        order_id TEXT    NOT NULL PRIMARY KEY REFERENCES orders (id),
        book_id  TEXT    NOT NULL REFERENCES books (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        state    TEXT    NOT NULL
                 CHECK (state = 'held' OR state = 'returned' OR state = 'refused')
    ) STRICT;
    INSERT INTO allocations_v4 (order_id, book_id, quantity, state)
        SELECT order_id, book_id, quantity, state FROM allocations;
    DROP TABLE allocations;
    ALTER TABLE allocations_v4 RENAME TO allocations;",
];

/// Statements kept compiled on the connection.
const STATEMENT_CACHE_CAPACITY: usize = 32;

/// Settings that live on the connection, not in the file, so every open sets them again.
pub(super) fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
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
    // Plans are made once, when a statement is compiled. Otherwise SQLite plans some
    // statements (a join, a LIMIT) with the values bound to them and compiles them again
    // when those change, which they do on every use: rusqlite clears the bindings of each
    // statement it takes back into its cache. That was 92 k instructions on each take of
    // stock, where a request of an order averaged 262 k.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Room for every statement the store has, about 25 with a listing for each combination
    // of filters: rusqlite keeps 16, and drops the least recently used beyond that, to
    // compile it again on its next use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Applies the schema steps this file has not had, all in one transaction, so that a crash
/// or a second process opening the file at the same time never leaves half a schema.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), OpError> {
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
