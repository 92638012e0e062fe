//! What only the SQLite store has to show: its file, its schema steps, its locking.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::{Connection, ErrorCode, StatementStatus};
use uuid::Uuid;

use crate::domain::model::{
    BookId, NewOrder, Order, OrderId, OrderQuery, OrderStatus, PageLimit, Quantity, StatusChange,
    Stock, UserId,
};
use crate::domain::storage::{Catalogue, OrderStore, StorageError};

use super::schema::{BUSY_TIMEOUT, MIGRATIONS};
use super::{OpError, SqliteStore};
use crate::storage::sql::DatabaseError;

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

/// A store on a fresh file holding the demo catalogue, in which `book-1` has 10 copies: these
/// tests are about the file, so any book will do, and the port's own rules are the
/// conformance suite's.
async fn demo_store() -> (TempDir, SqliteStore) {
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.db()).unwrap();
    assert!(store.seed_demo_catalogue().await.unwrap());
    (dir, store)
}

fn book_1() -> BookId {
    BookId::parse("book-1").unwrap()
}

/// One copy of `book-1` for `user-1`, not recorded yet.
fn new_order() -> NewOrder {
    NewOrder {
        id: OrderId::generate(),
        book_id: book_1(),
        user_id: UserId::parse("user-1").unwrap(),
        quantity: Quantity::new(1).unwrap(),
    }
}

async fn place(store: &SqliteStore) -> Order {
    store.create_order(&new_order()).await.unwrap().order
}

async fn stock_of_book_1(store: &SqliteStore) -> i64 {
    store.book(&book_1()).await.unwrap().details.stock.get()
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
    let (dir, first) = demo_store().await;
    let order = place(&first).await;
    drop(first);

    let second = SqliteStore::open(&dir.db()).unwrap();
    let third = SqliteStore::open(&dir.db()).unwrap();
    assert_eq!(stock_of_book_1(&second).await, 10);
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

/// A file made by the first `steps` schema steps, holding one confirmed order of two copies
/// of `book-1`, and then changed by `sql`.
fn file_with_one_confirmed_order(dir: &TempDir, steps: usize, sql: &str) {
    std::fs::create_dir_all(dir.db().parent().unwrap()).unwrap();
    let raw = Connection::open(dir.db()).unwrap();
    for step in &MIGRATIONS[..steps] {
        raw.execute_batch(step).unwrap();
    }
    raw.execute_batch(&format!(
        "INSERT INTO books VALUES ('book-1', 'T', 'A', 1250, 'EUR', 8);
         INSERT INTO orders (id, book_id, user_id, quantity, status, reason, stock_held,
                             unit_price, total_price, currency, created_at_us, updated_at_us)
         VALUES ('0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f', 'book-1', 'user-1', 2,
                 'confirmed', NULL, 1, 1250, 2500, 'EUR', 1, 1);
         INSERT INTO allocations VALUES
             ('0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f', 'book-1', 2, 'held');
         {sql}
         PRAGMA user_version = {steps};"
    ))
    .unwrap();
}

#[tokio::test]
async fn a_file_of_the_first_schema_is_migrated_with_its_orders_and_allocations() {
    let dir = TempDir::new();
    file_with_one_confirmed_order(&dir, 1, "");
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
    assert_eq!(stock_of_book_1(&store).await, 10);
    // New orders are numbered after the old ones, and foreign keys hold again.
    let later = place(&store).await;
    let page = store
        .orders(&OrderQuery {
            user_id: Some(UserId::parse("user-1").unwrap()),
            status: None,
            created_before: None,
            limit: PageLimit::new(10).unwrap(),
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
async fn copying_the_orders_table_gives_no_order_number_out_twice() {
    let dir = TempDir::new();
    file_with_one_confirmed_order(
        &dir,
        3,
        // As if the 41 orders after the first had been deleted by hand.
        "UPDATE sqlite_sequence SET seq = 42 WHERE name = 'orders';",
    );
    let store = SqliteStore::open(&dir.db()).unwrap();
    let later = place(&store).await;
    let raw = Connection::open(dir.db()).unwrap();
    let seq: i64 = raw
        .query_row(
            "SELECT seq FROM orders WHERE id = ?1",
            [later.id.0.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 43);
}

#[tokio::test]
async fn the_database_itself_refuses_negative_stock() {
    let (dir, _store) = demo_store().await;
    let raw = Connection::open(dir.db()).unwrap();
    raw.busy_timeout(BUSY_TIMEOUT).unwrap();
    let err = raw
        .execute("UPDATE books SET stock = -1 WHERE id = 'book-1'", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::ConstraintViolation)
    );
}

#[tokio::test]
async fn the_database_itself_refuses_an_unknown_status_or_state() {
    let (dir, store) = demo_store().await;
    let order = place(&store).await;
    store.take_stock(order.id).await.unwrap();
    let raw = Connection::open(dir.db()).unwrap();
    raw.busy_timeout(BUSY_TIMEOUT).unwrap();
    for refused in [
        "UPDATE orders SET status = 'lost'",
        "UPDATE orders SET status = NULL",
        "UPDATE allocations SET state = 'lost'",
    ] {
        let err = raw.execute(refused, []).unwrap_err();
        assert!(
            matches!(
                err.sqlite_error_code(),
                Some(ErrorCode::ConstraintViolation)
            ),
            "{refused}: {err}"
        );
    }
}

/// SQLite checks `x IN (three or more constants)` through a temporary index that it builds
/// on every run of the statement: the CHECKs of a status or state compare one value at a
/// time instead.
#[tokio::test]
async fn recording_an_order_or_changing_its_status_builds_no_temporary_index() {
    let (_dir, store) = demo_store().await;
    let opcodes: Vec<(String, Vec<String>)> = store
        .run(|conn| {
            let mut explained = Vec::new();
            for sql in [
                "INSERT INTO orders (id, book_id, user_id, quantity, status, stock_held,
                                     unit_price, total_price, currency, created_at_us,
                                     updated_at_us)
                 VALUES ('o', 'book-1', 'u', 1, 'pending', 0, 1, 1, 'EUR', 1, 1)",
                "UPDATE orders SET status = 'confirmed' WHERE id = 'o'",
                "INSERT INTO allocations (order_id, book_id, quantity, state)
                 VALUES ('o', 'book-1', 1, 'held')",
                "UPDATE allocations SET state = 'returned' WHERE order_id = 'o'",
            ] {
                let ops = conn
                    .prepare(&format!("EXPLAIN {sql}"))?
                    .query_map([], |row| row.get::<_, String>(1))?
                    .collect::<Result<_, _>>()?;
                explained.push((sql.to_owned(), ops));
            }
            Ok(explained)
        })
        .await
        .unwrap();
    for (sql, ops) in opcodes {
        assert!(!ops.is_empty());
        assert!(
            !ops.iter().any(|op| op == "OpenEphemeral"),
            "{sql}: {ops:?}"
        );
    }
}

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
    let (dir, store) = demo_store().await;
    store
        .run(|conn| {
            conn.busy_timeout(Duration::from_millis(50))?;
            Ok(())
        })
        .await
        .unwrap();
    let raw = Connection::open(dir.db()).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let order = new_order();
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
    let (_dir, store) = demo_store().await;
    let panicked = store
        .run(|_conn| -> Result<(), OpError> { panic!("a bug") })
        .await;
    assert!(matches!(panicked, Err(StorageError::Failed(_))));
    assert!(matches!(store.ping().await, Err(StorageError::Failed(_))));
}

#[tokio::test]
async fn a_corrupt_record_fails_instead_of_being_trusted() {
    let (dir, store) = demo_store().await;
    let order = place(&store).await;
    let raw = Connection::open(dir.db()).unwrap();
    raw.execute("UPDATE orders SET user_id = 'a/b'", [])
        .unwrap();
    assert!(matches!(
        store.order(order.id).await,
        Err(StorageError::Failed(_))
    ));
}

/// How often each statement ran and how often SQLite compiled it, by its SQL.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Compiles {
    runs: i32,
    /// Compiled again by SQLite itself, on a statement kept in the cache.
    recompiled: i32,
    /// One more than the runs that the statement object in use has not seen: above 1 when
    /// rusqlite dropped the statement and compiled it anew.
    prepared: i32,
}

/// Every statement of an order's life and of the catalogue is compiled once and then served
/// from the connection's cache. Two ways to lose that, both silent: SQLite compiles a kept
/// statement again when a parameter it planned with is bound anew (rusqlite clears the
/// bindings of every statement it takes back), and rusqlite drops the least recently used
/// statement when more are in use than its cache holds.
#[tokio::test]
async fn every_statement_is_compiled_once_and_then_served_from_the_cache() {
    let (_dir, store) = demo_store().await;
    let seen = Arc::new(Mutex::new(BTreeMap::<String, Compiles>::new()));
    let record = Arc::clone(&seen);
    store
        .run(move |conn| {
            conn.trace_v2(
                TraceEventCodes::SQLITE_TRACE_PROFILE,
                Some(move |event: TraceEvent<'_>| {
                    if let TraceEvent::Profile(stmt, _) = event {
                        let mut seen = record.lock().unwrap();
                        let entry = seen.entry(stmt.sql().into_owned()).or_default();
                        entry.runs += 1;
                        entry.recompiled = stmt.get_status(StatementStatus::RePrepare);
                        entry.prepared = entry.runs - stmt.get_status(StatementStatus::Run) + 1;
                    }
                }),
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let user_1 = UserId::parse("user-1").unwrap();
    let confirm = StatusChange {
        from: OrderStatus::Pending,
        to: OrderStatus::Confirmed,
        reason: None,
    };
    let reject = StatusChange {
        from: OrderStatus::Pending,
        to: OrderStatus::Rejected,
        reason: Some("out of stock".into()),
    };
    for round in 0..3 {
        let new = new_order();
        let order = store.create_order(&new).await.unwrap().order;
        assert!(!store.create_order(&new).await.unwrap().created);
        store.take_stock(order.id).await.unwrap();
        store.change_status(order.id, &confirm).await.unwrap();
        store.cancel_order(order.id, Some("changed")).await.unwrap();
        store.order(order.id).await.unwrap();
        store
            .set_stock(&book_1(), Stock::new(0).unwrap())
            .await
            .unwrap();
        let refused = place(&store).await;
        assert!(store.take_stock(refused.id).await.is_err());
        store.change_status(refused.id, &reject).await.unwrap();
        store
            .set_stock(&book_1(), Stock::new(10).unwrap())
            .await
            .unwrap();
        let failed = place(&store).await;
        store.take_stock(failed.id).await.unwrap();
        store.return_stock(failed.id).await.unwrap();
        let book = store.book(&book_1()).await.unwrap();
        store.put_book(&book).await.unwrap();
        store.books().await.unwrap();
        let first = store
            .orders(&OrderQuery {
                user_id: Some(user_1.clone()),
                status: None,
                created_before: None,
                limit: PageLimit::new(1 + round).unwrap(),
                cursor: None,
            })
            .await
            .unwrap();
        store
            .orders(&OrderQuery {
                user_id: Some(user_1.clone()),
                status: None,
                created_before: None,
                limit: PageLimit::new(2 + round).unwrap(),
                cursor: first.next_cursor,
            })
            .await
            .unwrap();
        store
            .orders(&OrderQuery {
                user_id: Some(user_1.clone()),
                status: Some(OrderStatus::Confirmed),
                created_before: None,
                limit: PageLimit::DEFAULT,
                cursor: None,
            })
            .await
            .unwrap();
        // As recovery lists what is left pending.
        store
            .orders(&OrderQuery {
                user_id: None,
                status: Some(OrderStatus::Pending),
                created_before: Some(chrono::Utc::now()),
                limit: PageLimit::MAX_PAGE,
                cursor: None,
            })
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    // rusqlite's transactions begin and end with statements of their own, uncached.
    let cached = |sql: &str| !matches!(sql, "BEGIN IMMEDIATE" | "COMMIT" | "ROLLBACK");
    let compiled_again: BTreeMap<_, _> = seen
        .iter()
        .filter(|(sql, compiles)| cached(sql) && (compiles.recompiled > 0 || compiles.prepared > 1))
        .collect();
    assert!(
        compiled_again.is_empty(),
        "compiled again: {compiled_again:#?}"
    );
    // Every cached statement above ran in each round.
    assert!(
        seen.iter()
            .filter(|(sql, c)| cached(sql) && c.runs >= 3)
            .count()
            >= 18,
        "{seen:#?}"
    );
}
