//! The storage port over PostgreSQL, for a reference Storage Service that runs as several
//! replicas on one database. Every rule is kept by the database, not by this process: checks,
//! keys and foreign keys in the schema, a conditional `UPDATE` for the stock, `ON CONFLICT`
//! for create-once, and row locks where an operation reads before it writes. Replicas share
//! nothing but the database, so nothing a replica remembers may decide an outcome.
//!
//! Isolation: every operation runs at READ COMMITTED, PostgreSQL's default, and is correct
//! there because each decision rests on a row that the deciding statement has locked:
//! - `create_order`, `change_status`, `put_book` and `set_stock` are one statement each. An
//!   `UPDATE` or `INSERT ... ON CONFLICT` that meets a row another transaction is changing
//!   waits for it and re-checks its `WHERE` against the committed row, so two writers can
//!   never both pass a compare-and-set.
//! - `take_stock` and `return_stock` read the order and its allocation, then write the book,
//!   the allocation and the order. They lock the order row first (`FOR NO KEY UPDATE`), which
//!   queues every take, return and status change of that order behind one another; the stock
//!   itself only moves through `UPDATE books ... WHERE stock >= quantity`, which re-checks the
//!   committed stock under the book's row lock. Locks are always taken order first, book
//!   second, so these transactions cannot deadlock one another.
//! - Reads (`order`, `orders`, `book`, `books`) are single statements, each on one snapshot.
//!
//! SERIALIZABLE would also be correct, but would make every conflicting pair of orders fail
//! with a serialization error to be retried, where row locks simply make them wait their turn.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::{NoTls, Row, config::SslMode, error::SqlState, types::ToSql};

use crate::domain::model::{
    AllocationState, Book, BookDetails, BookId, Currency, InvalidValue, Money, NewOrder, Order,
    OrderId, OrderQuery, OrderStatus, Page, Quantity, Recorded, StatusChange, Stock,
    StockAllocation, UserId,
};
use crate::domain::storage::{Catalogue, OrderStore, StorageError, StorageResult};

use super::rules;
use super::sql::{self, DatabaseError, conflict, not_found};
use super::{cursor, demo};

/// Connections a store keeps at most (`DATABASE_POOL_SIZE`). Each replica has its own pool,
/// so the database sees up to replicas × this; PostgreSQL's default `max_connections` is 100.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`): a
/// server that drops packets must not hold a request, or startup, for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a free connection before it fails as `Unavailable`; long enough
/// to ride out a burst, short enough to answer within the client's attempt timeout.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Key of the advisory lock that serialises migrations and the demo seed across replicas
/// starting at once. Any constant works, as long as nothing else in the database uses it.
const SCHEMA_LOCK: i64 = 0x6f72_6465_7273; // "orders"

/// Schema steps in order; the table `schema_migrations` lists those a database has had.
/// Append new steps and never edit a released one: databases in the field have run it.
const MIGRATIONS: &[&str] = &[
    // 1: the catalogue, the orders and the stock each order took, or was refused.
    "CREATE TABLE books (
        id       TEXT   NOT NULL PRIMARY KEY,
        title    TEXT   NOT NULL,
        author   TEXT   NOT NULL,
        price    BIGINT NOT NULL CHECK (price >= 0),
        currency TEXT   NOT NULL,
        -- The last line of defence against overselling: no statement can leave less than 0.
        stock    BIGINT NOT NULL CHECK (stock >= 0)
    );

    CREATE TABLE orders (
        id          UUID        NOT NULL PRIMARY KEY,
        -- The order of insertion, for keyset pagination; an identity never goes back, so a
        -- cursor keeps its place whatever is inserted or deleted later.
        seq         BIGINT      NOT NULL GENERATED ALWAYS AS IDENTITY UNIQUE,
        book_id     TEXT        NOT NULL REFERENCES books (id),
        user_id     TEXT        NOT NULL,
        quantity    INTEGER     NOT NULL CHECK (quantity > 0),
        status      TEXT        NOT NULL
                    CHECK (status IN ('pending', 'confirmed', 'rejected', 'failed')),
        reason      TEXT,
        stock_held  BOOLEAN     NOT NULL,
        unit_price  BIGINT      NOT NULL CHECK (unit_price >= 0),
        total_price BIGINT      NOT NULL CHECK (total_price >= 0),
        currency    TEXT        NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        updated_at  TIMESTAMPTZ NOT NULL,
        CHECK (status <> 'confirmed' OR stock_held)
    );

    CREATE INDEX orders_by_user ON orders (user_id, seq);
    CREATE INDEX orders_by_status ON orders (status, seq);

    -- One row per order, ever: a returned or refused row stays, so that a late or repeated
    -- take can neither take the stock again nor change the first answer.
    CREATE TABLE allocations (
        order_id UUID    NOT NULL PRIMARY KEY REFERENCES orders (id),
        book_id  TEXT    NOT NULL REFERENCES books (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        state    TEXT    NOT NULL CHECK (state IN ('held', 'returned', 'refused'))
    );",
    // 2: a confirmed order can be cancelled, and a cancelled order holds nothing.
    "ALTER TABLE orders DROP CONSTRAINT orders_status_check;
    ALTER TABLE orders ADD CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'confirmed', 'rejected', 'failed', 'cancelled'));
    ALTER TABLE orders ADD CONSTRAINT orders_cancelled_holds_nothing
        CHECK (status <> 'cancelled' OR NOT stock_held);",
];

const BOOK_COLUMNS: &str = "id, title, author, price, currency, stock";

const ORDER_COLUMNS: &str = "id, book_id, user_id, quantity, status, reason, stock_held, \
     unit_price, total_price, currency, created_at, updated_at";

/// Where the database is and how many connections to keep: `DATABASE_URL` and
/// `DATABASE_POOL_SIZE`.
#[derive(Clone)]
pub struct PostgresConfig {
    pub url: tokio_postgres::Config,
    pub pool_size: usize,
}

impl PostgresConfig {
    /// Reads a `postgres://` URL (or a `key=value` connection string), with the default pool
    /// size. Refuses a URL that demands TLS: this build connects without it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut url = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
        if url.get_hosts().is_empty() {
            return Err("the URL names no host".to_owned());
        }
        if matches!(url.get_ssl_mode(), SslMode::Require) {
            return Err(
                "sslmode=require asks for TLS, which this service does not speak; reach the \
                 database over a private network (see the README)"
                    .to_owned(),
            );
        }
        if url.get_connect_timeout().is_none() {
            url.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Self {
            url,
            pool_size: DEFAULT_POOL_SIZE,
        })
    }
}

/// The database's place, without user or password, for messages and logs.
impl fmt::Display for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use tokio_postgres::config::Host;
        let hosts: Vec<String> = self
            .url
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = self.url.get_ports().get(i).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        write!(
            f,
            "{}/{}",
            hosts.join(","),
            self.url.get_dbname().unwrap_or("(default database)")
        )
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("database", &self.to_string())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The storage port over a PostgreSQL database. Clones share one pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects once, to find out now rather than on the first request whether the database
    /// can be reached, and brings its schema up to date.
    pub async fn connect(config: &PostgresConfig) -> StorageResult<Self> {
        let manager = Manager::from_config(
            config.url.clone(),
            NoTls,
            // Fast: a connection the server has closed is noticed and dropped, without a round
            // trip per checkout; one that breaks unnoticed fails one call as `Unavailable`,
            // which the client retries on a fresh connection.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(config.url.get_connect_timeout().copied())
            .build()
            .map_err(|e| StorageError::Failed(Box::new(e)))?;
        let store = Self { pool };
        let mut client = store.client().await?;
        migrate(&mut client).await.map_err(StorageError::from)?;
        Ok(store)
    }

    /// Loads the demo catalogue into a store that has no book yet; answers whether it did.
    /// A store that has any book is left alone, so that restarts never undo sales or
    /// restocking; replicas starting together take turns on the schema lock.
    pub async fn seed_demo_catalogue(&self) -> StorageResult<bool> {
        let mut client = self.client().await?;
        let seeded: Result<bool, OpError> = async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await?;
            let has_books: bool = tx
                .query_one("SELECT EXISTS (SELECT 1 FROM books)", &[])
                .await?
                .try_get(0)?;
            if has_books {
                return Ok(false);
            }
            let insert = tx
                .prepare(
                    "INSERT INTO books (id, title, author, price, currency, stock)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?;
            for book in &demo::CATALOGUE {
                tx.execute(
                    &insert,
                    &[
                        &book.id,
                        &book.title,
                        &book.author,
                        &book.price_cents,
                        &demo::CURRENCY,
                        &book.stock,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        }
        .await;
        seeded.map_err(StorageError::from)
    }

    async fn client(&self) -> StorageResult<Object> {
        self.pool.get().await.map_err(classify_pool)
    }
}

/// Applies the schema steps the database has not had, in one transaction under an advisory
/// lock: replicas that start together wait for the first one, then find nothing to do, and a
/// crash half-way leaves the schema as it was (PostgreSQL's DDL is transactional).
async fn migrate(client: &mut Object) -> Result<(), OpError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER     NOT NULL PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let done: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    let done = sql::steps_done(done.into(), MIGRATIONS.len())?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql).await?;
        // `step` indexes a small constant table: it always fits.
        let version = step as i32 + 1;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

type OpError = sql::OpError<tokio_postgres::Error>;

/// Whether trying again can help: the server is gone, restarting, out of connections, or
/// chose this transaction as a deadlock or serialization victim. Anything else (a broken
/// constraint, a missing table, a type mismatch, bad credentials) is a bug or a
/// misconfiguration, which a retry does not mend.
impl DatabaseError for tokio_postgres::Error {
    fn classify(self) -> StorageError {
        let transient = match self.code() {
            Some(code) => is_transient(code),
            // No SQLSTATE: the connection broke, timed out or could not be made.
            None => self.is_closed() || has_io_source(&self),
        };
        if transient {
            StorageError::Unavailable(Box::new(self))
        } else {
            StorageError::Failed(Box::new(self))
        }
    }
}

fn is_transient(code: &SqlState) -> bool {
    // Class 08: connection exception.
    code.code().starts_with("08")
        || [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
}

fn has_io_source(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if err.is::<std::io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// No free connection in time, or none could be made: the database is busy or away.
fn classify_pool(e: PoolError) -> StorageError {
    match e {
        PoolError::Backend(e) => e.classify(),
        PoolError::Timeout(_) | PoolError::Closed => StorageError::Unavailable(Box::new(e)),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            StorageError::Failed(Box::new(e))
        }
    }
}

/// Reads column `idx` and checks it with the domain's own parser, so that a record read back
/// has passed the same rules as one that came in.
fn checked<'a, T, U>(
    row: &'a Row,
    idx: usize,
    parse: impl FnOnce(T) -> Result<U, InvalidValue>,
) -> Result<U, OpError>
where
    T: tokio_postgres::types::FromSql<'a>,
{
    Ok(parse(row.try_get(idx)?)?)
}

/// A row of `BOOK_COLUMNS`.
fn book_from_row(row: &Row) -> Result<Book, OpError> {
    let id = checked(row, 0, BookId::parse)?;
    let details = BookDetails {
        title: row.try_get(1)?,
        author: row.try_get(2)?,
        price: checked(row, 3, Money::price)?,
        currency: checked(row, 4, Currency::parse)?,
        stock: checked(row, 5, Stock::new)?,
    };
    Ok(details.with_id(id))
}

/// A row that starts with `ORDER_COLUMNS`.
fn order_from_row(row: &Row) -> Result<Order, OpError> {
    Ok(Order {
        id: OrderId(row.try_get(0)?),
        book_id: checked(row, 1, BookId::parse)?,
        user_id: checked(row, 2, UserId::parse)?,
        quantity: checked(row, 3, |q: i32| Quantity::new(q.into()))?,
        status: checked(row, 4, OrderStatus::parse)?,
        reason: row.try_get(5)?,
        stock_held: row.try_get(6)?,
        unit_price: checked(row, 7, Money::price)?,
        total_price: checked(row, 8, Money::new)?,
        currency: checked(row, 9, Currency::parse)?,
        created_at: row.try_get::<_, DateTime<Utc>>(10)?,
        updated_at: row.try_get::<_, DateTime<Utc>>(11)?,
    })
}

/// `Quantity` is at most 1000, so it always fits the `INTEGER` column.
fn quantity_param(quantity: Quantity) -> i32 {
    quantity.get() as i32
}

async fn select_order(
    client: &impl GenericClient,
    id: OrderId,
    lock: &str,
) -> Result<Option<Order>, OpError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 {lock}"
        ))
        .await?;
    client
        .query_opt(&stmt, &[&id.0])
        .await?
        .map(|row| order_from_row(&row))
        .transpose()
}

/// The order's allocation with its book's stock now.
async fn select_allocation(
    client: &impl GenericClient,
    id: OrderId,
) -> Result<Option<StockAllocation>, OpError> {
    let stmt = client
        .prepare_cached(
            "SELECT a.order_id, a.book_id, a.quantity, a.state, b.stock
             FROM allocations a JOIN books b ON b.id = a.book_id
             WHERE a.order_id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&id.0]).await? else {
        return Ok(None);
    };
    Ok(Some(StockAllocation {
        order_id: OrderId(row.try_get(0)?),
        book_id: checked(&row, 1, BookId::parse)?,
        quantity: checked(&row, 2, |q: i32| Quantity::new(q.into()))?,
        state: checked(&row, 3, AllocationState::parse)?,
        book_stock: checked(&row, 4, Stock::new)?,
    }))
}

/// The book's stock; the foreign keys guarantee that an order's book exists.
async fn book_stock(client: &impl GenericClient, book_id: &BookId) -> Result<Stock, OpError> {
    let stmt = client
        .prepare_cached("SELECT stock FROM books WHERE id = $1")
        .await?;
    let row = client.query_one(&stmt, &[&book_id.as_str()]).await?;
    checked(&row, 0, Stock::new)
}

async fn insert_allocation(
    client: &impl GenericClient,
    order: &Order,
    state: AllocationState,
) -> Result<(), OpError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO allocations (order_id, book_id, quantity, state)
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &order.id.0,
                &order.book_id.as_str(),
                &quantity_param(order.quantity),
                &state.as_str(),
            ],
        )
        .await?;
    Ok(())
}

async fn set_stock_held(
    client: &impl GenericClient,
    id: OrderId,
    held: bool,
) -> Result<(), OpError> {
    let stmt = client
        .prepare_cached("UPDATE orders SET stock_held = $2, updated_at = now() WHERE id = $1")
        .await?;
    client.execute(&stmt, &[&id.0, &held]).await?;
    Ok(())
}

/// One statement: the insert happens only if the book exists and no order has this id. A
/// concurrent insert of the same id makes `ON CONFLICT` wait for it and then do nothing, so
/// the read that follows finds the one recorded order.
async fn create_order(client: &Object, new: &NewOrder) -> Result<Recorded, OpError> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO orders (id, book_id, user_id, quantity, status, reason, stock_held,
                                 unit_price, total_price, currency, created_at, updated_at)
             SELECT $1::uuid, id, $3::text, $4::integer, 'pending', NULL, FALSE,
                    price, price * $4::integer, currency, now(), now()
             FROM books WHERE id = $2::text
             ON CONFLICT (id) DO NOTHING
             RETURNING {ORDER_COLUMNS}"
        ))
        .await?;
    let inserted = client
        .query_opt(
            &stmt,
            &[
                &new.id.0,
                &new.book_id.as_str(),
                &new.user_id.as_str(),
                &quantity_param(new.quantity),
            ],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok(Recorded {
            order: order_from_row(&row)?,
            created: true,
        });
    }
    match select_order(client, new.id, "").await? {
        Some(existing) if existing.matches(new) => Ok(Recorded {
            order: existing,
            created: false,
        }),
        Some(_) => Err(conflict(format!(
            "order {} already exists with another book, user or quantity",
            new.id
        ))),
        None => Err(StorageError::UnknownBook.into()),
    }
}

async fn list_orders(client: &Object, query: &OrderQuery) -> Result<Page<Order>, OpError> {
    // Keyset pagination on the insertion sequence: a page starts strictly below the last item
    // seen, so orders created meanwhile (always above) can neither shift nor repeat it.
    let before = match &query.cursor {
        Some(cursor) => cursor::decode(cursor)?,
        None => i64::MAX,
    };
    let user = query.user_id.as_ref().map(UserId::as_str);
    let status = query.status.map(OrderStatus::as_str);
    let fetch = i64::from(query.limit.get()) + 1;
    // Only the filters asked for are in the statement, so that the planner picks the index
    // that fits: by user for a user's list, by status for recovery.
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&before];
    let mut filters = vec!["seq < $1".to_owned()];
    if let Some(user) = &user {
        params.push(user);
        filters.push(format!("user_id = ${}", params.len()));
    }
    if let Some(status) = &status {
        params.push(status);
        filters.push(format!("status = ${}", params.len()));
    }
    if let Some(created_before) = &query.created_before {
        params.push(created_before);
        filters.push(format!("created_at < ${}", params.len()));
    }
    params.push(&fetch);
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS}, seq FROM orders
             WHERE {}
             ORDER BY seq DESC
             LIMIT ${}",
            filters.join(" AND "),
            params.len()
        ))
        .await?;
    let rows = client.query(&stmt, &params).await?;
    let limit = query.limit.get() as usize;
    let mut items = Vec::with_capacity(limit);
    let mut last_seq = None;
    // One more than asked tells whether a next page exists without a second query.
    for row in rows.iter().take(limit) {
        items.push(order_from_row(row)?);
        last_seq = Some(row.try_get::<_, i64>(12)?);
    }
    let next_cursor = if rows.len() > limit {
        last_seq.map(cursor::encode)
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// A compare-and-set in one `UPDATE`: it changes the order only if it is still in `from`
/// (and, to confirm, still holds its stock). When it changes nothing, a read says why.
async fn change_status(
    client: &Object,
    id: OrderId,
    change: &StatusChange,
) -> Result<Order, OpError> {
    rules::check_change(change)?;
    let reason = rules::stored_reason(change);
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE orders SET status = $2, reason = $3, updated_at = now()
             WHERE id = $1 AND status = $4 AND ($2 <> 'confirmed' OR stock_held)
             RETURNING {ORDER_COLUMNS}"
        ))
        .await?;
    let updated = client
        .query_opt(
            &stmt,
            &[&id.0, &change.to.as_str(), &reason, &change.from.as_str()],
        )
        .await?;
    if let Some(row) = updated {
        return order_from_row(&row);
    }
    let current = select_order(client, id, "").await?.ok_or_else(not_found)?;
    rules::settled_change(id, current, change)?
        .ok_or_else(|| conflict(format!("order {id} changed while its status was being set")))
}

async fn take_stock(client: &mut Object, id: OrderId) -> Result<StockAllocation, OpError> {
    let tx = client.transaction().await?;
    // The order's row lock queues every take, return and status change of this order, so
    // what is read below stays true until the commit.
    let order = select_order(&tx, id, "FOR NO KEY UPDATE")
        .await?
        .ok_or_else(not_found)?;
    if let Some(held) = rules::settled_take(&order, select_allocation(&tx, id).await?)? {
        return Ok(held);
    }
    // Check and decrement in one statement under the book's row lock: the database decides
    // on the committed stock whether there is enough, whichever replica asks.
    let quantity = i64::from(order.quantity.get());
    let stmt = tx
        .prepare_cached(
            "UPDATE books SET stock = stock - $2 WHERE id = $1 AND stock >= $2 RETURNING stock",
        )
        .await?;
    let taken = tx
        .query_opt(&stmt, &[&order.book_id.as_str(), &quantity])
        .await?;
    let Some(row) = taken else {
        // Recorded in the same transaction as the check, so that every later take of this
        // order answers the same refusal.
        insert_allocation(&tx, &order, AllocationState::Refused).await?;
        let available = book_stock(&tx, &order.book_id).await?.get();
        tx.commit().await?;
        return Err(rules::out_of_stock(available).into());
    };
    let book_stock = checked(&row, 0, Stock::new)?;
    insert_allocation(&tx, &order, AllocationState::Held).await?;
    set_stock_held(&tx, id, true).await?;
    tx.commit().await?;
    Ok(StockAllocation {
        order_id: order.id,
        book_id: order.book_id,
        quantity: order.quantity,
        state: AllocationState::Held,
        book_stock,
    })
}

/// Cancels a confirmed order: its stock goes back and its status becomes `cancelled` in one
/// transaction, under the order's row lock, so a concurrent cancel waits and then finds it
/// cancelled. READ COMMITTED is enough: every decision is taken on the locked row.
async fn cancel_order(
    client: &mut Object,
    id: OrderId,
    reason: Option<&str>,
) -> Result<Order, OpError> {
    let tx = client.transaction().await?;
    let order = select_order(&tx, id, "FOR NO KEY UPDATE")
        .await?
        .ok_or_else(not_found)?;
    if !rules::is_to_cancel(&order)? {
        return Ok(order);
    }
    let held = rules::held_by_confirmed(id, select_allocation(&tx, id).await?)?;
    let give_back = tx
        .prepare_cached("UPDATE books SET stock = stock + $2 WHERE id = $1")
        .await?;
    tx.execute(
        &give_back,
        &[&held.book_id.as_str(), &i64::from(held.quantity.get())],
    )
    .await?;
    let close = tx
        .prepare_cached(
            "UPDATE allocations SET state = 'returned' WHERE order_id = $1 AND state = 'held'",
        )
        .await?;
    tx.execute(&close, &[&id.0]).await?;
    // Status and `stock_held` in one statement: the table's checks see them agree.
    let cancel = tx
        .prepare_cached(&format!(
            "UPDATE orders SET status = 'cancelled', stock_held = FALSE, reason = $2,
                               updated_at = now()
             WHERE id = $1 AND status = 'confirmed'
             RETURNING {ORDER_COLUMNS}"
        ))
        .await?;
    let row = tx.query_one(&cancel, &[&id.0, &reason]).await?;
    let cancelled = order_from_row(&row)?;
    tx.commit().await?;
    Ok(cancelled)
}

async fn return_stock(client: &mut Object, id: OrderId) -> Result<StockAllocation, OpError> {
    let tx = client.transaction().await?;
    // The same lock as a take and a status change: no confirmation can slip in between the
    // check below and the return.
    let order = select_order(&tx, id, "FOR NO KEY UPDATE")
        .await?
        .ok_or_else(not_found)?;
    rules::check_returnable(&order)?;
    let allocation = match select_allocation(&tx, id).await? {
        Some(closed) if closed.state != AllocationState::Held => return Ok(closed),
        Some(held) => {
            let stmt = tx
                .prepare_cached("UPDATE books SET stock = stock + $2 WHERE id = $1 RETURNING stock")
                .await?;
            let row = tx
                .query_one(
                    &stmt,
                    &[&held.book_id.as_str(), &i64::from(held.quantity.get())],
                )
                .await?;
            let book_stock = checked(&row, 0, Stock::new)?;
            let close = tx
                .prepare_cached(
                    "UPDATE allocations SET state = 'returned'
                     WHERE order_id = $1 AND state = 'held'",
                )
                .await?;
            tx.execute(&close, &[&id.0]).await?;
            set_stock_held(&tx, id, false).await?;
            StockAllocation {
                state: AllocationState::Returned,
                book_stock,
                ..held
            }
        }
        None => {
            // Nothing to give back, but the closed allocation must exist: a take that was
            // sent before this call and arrives after it would otherwise still succeed.
            insert_allocation(&tx, &order, AllocationState::Returned).await?;
            StockAllocation {
                book_stock: book_stock(&tx, &order.book_id).await?,
                order_id: order.id,
                book_id: order.book_id,
                quantity: order.quantity,
                state: AllocationState::Returned,
            }
        }
    };
    tx.commit().await?;
    Ok(allocation)
}

async fn book(client: &Object, id: &BookId) -> Result<Book, OpError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {BOOK_COLUMNS} FROM books WHERE id = $1"))
        .await?;
    let row = client
        .query_opt(&stmt, &[&id.as_str()])
        .await?
        .ok_or_else(not_found)?;
    book_from_row(&row)
}

async fn books(client: &Object) -> Result<Vec<Book>, OpError> {
    // By code point, as the SQLite store sorts, whatever collation the database was made with.
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {BOOK_COLUMNS} FROM books ORDER BY id COLLATE \"C\""
        ))
        .await?;
    client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(book_from_row)
        .collect()
}

async fn put_book(client: &Object, book: &Book) -> Result<Book, OpError> {
    // An upsert, so that a book that has orders (and so foreign keys pointing at it) can
    // still be replaced.
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO books (id, title, author, price, currency, stock)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET
                 title = excluded.title,
                 author = excluded.author,
                 price = excluded.price,
                 currency = excluded.currency,
                 stock = excluded.stock
             RETURNING {BOOK_COLUMNS}"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &book.id.as_str(),
                &book.details.title,
                &book.details.author,
                &book.details.price.minor_units(),
                &book.details.currency.as_str(),
                &book.details.stock.get(),
            ],
        )
        .await?;
    book_from_row(&row)
}

async fn set_stock(client: &Object, id: &BookId, stock: Stock) -> Result<Book, OpError> {
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE books SET stock = $2 WHERE id = $1 RETURNING {BOOK_COLUMNS}"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&id.as_str(), &stock.get()])
        .await?
        .ok_or_else(not_found)?;
    book_from_row(&row)
}

impl OrderStore for PostgresStore {
    async fn create_order(&self, order: &NewOrder) -> StorageResult<Recorded> {
        let client = self.client().await?;
        Ok(create_order(&client, order).await?)
    }

    async fn order(&self, id: OrderId) -> StorageResult<Order> {
        let client = self.client().await?;
        select_order(&client, id, "")
            .await?
            .ok_or(StorageError::NotFound)
    }

    async fn orders(&self, query: &OrderQuery) -> StorageResult<Page<Order>> {
        let client = self.client().await?;
        Ok(list_orders(&client, query).await?)
    }

    async fn change_status(&self, id: OrderId, change: &StatusChange) -> StorageResult<Order> {
        let client = self.client().await?;
        Ok(change_status(&client, id, change).await?)
    }

    async fn take_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        let mut client = self.client().await?;
        Ok(take_stock(&mut client, id).await?)
    }

    async fn return_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        let mut client = self.client().await?;
        Ok(return_stock(&mut client, id).await?)
    }

    async fn cancel_order(&self, id: OrderId, reason: Option<&str>) -> StorageResult<Order> {
        let mut client = self.client().await?;
        Ok(cancel_order(&mut client, id, reason).await?)
    }

    async fn ping(&self) -> StorageResult<()> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(DatabaseError::classify)?;
        Ok(())
    }
}

impl Catalogue for PostgresStore {
    async fn book(&self, id: &BookId) -> StorageResult<Book> {
        let client = self.client().await?;
        Ok(book(&client, id).await?)
    }

    async fn books(&self) -> StorageResult<Vec<Book>> {
        let client = self.client().await?;
        Ok(books(&client).await?)
    }

    async fn put_book(&self, book: &Book) -> StorageResult<Book> {
        let client = self.client().await?;
        Ok(put_book(&client, book).await?)
    }

    async fn set_stock(&self, id: &BookId, stock: Stock) -> StorageResult<Book> {
        let client = self.client().await?;
        Ok(set_stock(&client, id, stock).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_host_parses_and_shows_no_password() {
        let config = PostgresConfig::parse("postgres://shop:s3cret@db.internal:6543/orders")
            .expect("a valid URL");
        assert_eq!(config.to_string(), "db.internal:6543/orders");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(config.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(config.url.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn a_url_that_is_not_one_or_names_no_host_or_demands_tls_is_refused() {
        for bad in [
            "http://db/orders",
            "postgres://db:notaport/orders",
            "postgres:///orders",
            "postgres://db/orders?sslmode=require",
        ] {
            assert!(PostgresConfig::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn lost_connections_and_transaction_victims_are_retryable_and_other_errors_are_not() {
        for code in [
            SqlState::CONNECTION_FAILURE,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::TOO_MANY_CONNECTIONS,
        ] {
            assert!(is_transient(&code), "{code:?}");
        }
        for code in [
            SqlState::CHECK_VIOLATION,
            SqlState::UNIQUE_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::INVALID_PASSWORD,
        ] {
            assert!(!is_transient(&code), "{code:?}");
        }
    }
}
