//! Starts the services under test on port 0 and talks to them over real HTTP.

use std::sync::Arc;

use order_processor::{
    domain::{
        model::{
            Book, BookId, NewOrder, Order, OrderId, OrderQuery, Page, Recorded, StatusChange,
            Stock, StockAllocation,
        },
        storage::{Catalogue, OrderStore, StorageResult},
    },
    http::{server::Running, storage_api::spawn_reference_storage},
    startup::{Application, Options},
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        postgres::PostgresStore,
        sqlite::SqliteStore,
    },
};
use serde_json::{Value, json};

use crate::support::{
    catalogue::{book, stock_of},
    fs::TempDir,
    net::LOOPBACK,
    postgres::PgServer,
    sqlite::fresh_store,
};

/// Where the Order Processor under test keeps its orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite store, in-process.
    Embedded,
    /// The reference Storage Service on SQLite, over HTTP through the progenitor client.
    Remote,
    /// The reference Storage Service on a PostgreSQL database of its own, on the server this
    /// test binary shares, over HTTP.
    Postgres,
}

/// An Order Processor on a random loopback port, and the store underneath it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The database the orders end up in, whichever the backend: to set up books and to
    /// check stock without going through the service under test.
    pub store: TestStore,
    pub storage_service: Option<Running>,
    _order_processor: Running,
    /// The SQLite file's directory, on the backends that have one.
    _dir: Option<TempDir>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

/// An Order Processor as [`spawn_app`] starts it, run with `options`.
pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    let (store, dir) = match backend {
        Backend::Embedded | Backend::Remote => {
            let (store, dir) = fresh_store();
            (TestStore::Sqlite(store), Some(dir))
        }
        Backend::Postgres => (TestStore::Postgres(postgres_store().await), None),
    };
    let (order_processor, storage_service) = match backend {
        Backend::Embedded => (
            spawn_order_processor_with(store.clone(), options).await,
            None,
        ),
        Backend::Remote | Backend::Postgres => {
            let storage_service = spawn_reference_storage(Arc::new(store.clone()), LOOPBACK)
                .await
                .expect("start the reference Storage Service");
            let storage = HttpStorage::new(&storage_service.url(), HttpStorageConfig::default())
                .expect("build the storage client");
            (
                spawn_order_processor_with(storage, options).await,
                Some(storage_service),
            )
        }
    };
    TestApp {
        address: order_processor.url(),
        client: reqwest::Client::new(),
        store,
        storage_service,
        _order_processor: order_processor,
        _dir: dir,
    }
}

/// A store on a new database of the shared PostgreSQL server.
pub async fn postgres_store() -> PostgresStore {
    let config = PgServer::shared().create_database().await;
    PostgresStore::connect(&config)
        .await
        .expect("open the test database")
}

/// The store under a test, whichever kind the backend uses.
#[derive(Clone)]
pub enum TestStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Calls `$call` on whichever store this is.
macro_rules! on_store {
    ($store:expr, $inner:ident => $call:expr) => {
        match $store {
            TestStore::Sqlite($inner) => $call.await,
            TestStore::Postgres($inner) => $call.await,
        }
    };
}

/// The embedded backend runs the Order Processor on this store, and the remote ones serve it
/// through the reference Storage Service.
impl OrderStore for TestStore {
    async fn create_order(&self, order: &NewOrder) -> StorageResult<Recorded> {
        on_store!(self, store => store.create_order(order))
    }
    async fn order(&self, id: OrderId) -> StorageResult<Order> {
        on_store!(self, store => store.order(id))
    }
    async fn orders(&self, query: &OrderQuery) -> StorageResult<Page<Order>> {
        on_store!(self, store => store.orders(query))
    }
    async fn change_status(&self, id: OrderId, change: &StatusChange) -> StorageResult<Order> {
        on_store!(self, store => store.change_status(id, change))
    }
    async fn cancel_order(&self, id: OrderId, reason: Option<&str>) -> StorageResult<Order> {
        on_store!(self, store => store.cancel_order(id, reason))
    }
    async fn take_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        on_store!(self, store => store.take_stock(id))
    }
    async fn return_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        on_store!(self, store => store.return_stock(id))
    }
    async fn ping(&self) -> StorageResult<()> {
        on_store!(self, store => store.ping())
    }
}

/// Books are set up and checked through the store on every backend, and the reference
/// Storage Service serves them from it.
impl Catalogue for TestStore {
    async fn book(&self, id: &BookId) -> StorageResult<Book> {
        on_store!(self, store => store.book(id))
    }
    async fn books(&self) -> StorageResult<Vec<Book>> {
        on_store!(self, store => store.books())
    }
    async fn put_book(&self, book: &Book) -> StorageResult<Book> {
        on_store!(self, store => store.put_book(book))
    }
    async fn set_stock(&self, id: &BookId, stock: Stock) -> StorageResult<Book> {
        on_store!(self, store => store.set_stock(id, stock))
    }
}

/// Starts an Order Processor over `storage`; it stops when the handle is dropped.
pub async fn spawn_order_processor<S: OrderStore>(storage: S) -> Running {
    spawn_order_processor_with(storage, Options::default()).await
}

/// Starts an Order Processor over `storage`, run with `options`.
pub async fn spawn_order_processor_with<S: OrderStore>(storage: S, options: Options) -> Running {
    Application::build_with(storage, LOOPBACK, options)
        .await
        .expect("bind the order processor")
        .spawn()
}

impl TestApp {
    /// Puts a book with `stock` copies at 12.99 EUR into the store.
    pub async fn add_book(&self, id: &str, stock: i64) {
        self.store
            .put_book(&book(id, 1299, stock))
            .await
            .expect("put the book");
    }

    pub async fn stock_of(&self, id: &str) -> i64 {
        stock_of(&self.store, id).await
    }

    pub async fn post_order(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/orders", self.address))
            .json(body)
            .send()
            .await
            .expect("send POST /orders")
    }

    pub async fn post_order_with_key(&self, body: &Value, key: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/orders", self.address))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("send POST /orders")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("send GET")
    }
}

pub fn order(book_id: &str, quantity: i64, user_id: &str) -> Value {
    json!({ "bookId": book_id, "quantity": quantity, "userId": user_id })
}

/// Defines each listed `async fn name(backend: Backend)` as one test per backend: the embedded
/// store, and the reference Storage Service on SQLite and on PostgreSQL. (Named when there were
/// two; the tests that use it need not change.)
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Embedded).await
                }
            )*
        }
        mod remote {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Remote).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

pub(crate) use on_both_backends;
