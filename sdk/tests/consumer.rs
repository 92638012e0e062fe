//! Consumer tests: the real Order Processor runs in-process on a loopback port over a fresh
//! embedded store, and every operation and every error answer a caller can provoke goes
//! through this SDK, as the Books Service would send it.
//!
//! Not provoked here, because the typed client cannot send the request that causes them:
//! - the 400s of values the generated types check before sending (an empty, too long or
//!   `/`-containing id, a quantity or limit of 0, a malformed `Idempotency-Key` or cursor;
//!   see `values_the_contract_forbids_are_refused_before_any_request_is_sent`), and the 400
//!   of `get_order` for an id that is not a UUID (the id is a `uuid::Uuid`);
//! - 413 and 415: the client always sends a small `application/json` body;
//! - 500: it answers a fault of the service itself, which a caller cannot cause.

use std::{
    net::{Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    path::PathBuf,
};

use order_processor::{
    domain::{
        model::{Book, BookDetails, BookId, Currency, Money, Stock},
        storage::{Catalogue, OrderStore},
    },
    http::server::Running,
    startup::Application,
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        sqlite::SqliteStore,
    },
};
use order_processor_client::{
    Client, Error, ResponseValue,
    hooks::Hooks,
    types::{CreateOrderRequest, HealthStatus, Order, OrderStatus, Problem},
};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("order-processor-sdk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running Order Processor, the SDK client pointed at it, and its store, to set up books
/// and check stock without going through the service.
struct Service {
    client: Client,
    store: SqliteStore,
    _server: Running,
    _dir: TempDir,
}

async fn start() -> Service {
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.0.join("orders.db")).expect("open the store");
    let (client, server) = start_over(store.clone()).await;
    Service {
        client,
        store,
        _server: server,
        _dir: dir,
    }
}

/// Starts an Order Processor over `storage`; it stops when the handle is dropped.
async fn start_over<S: OrderStore>(storage: S) -> (Client, Running) {
    let server = Application::build(storage, LOOPBACK)
        .await
        .expect("bind the order processor")
        .spawn();
    (Client::new(&server.url(), Hooks::default()), server)
}

/// An Order Processor whose Storage Service does not answer: nothing listens at its address.
async fn start_with_storage_down() -> (Client, Running) {
    let listener = tokio::net::TcpListener::bind(LOOPBACK)
        .await
        .expect("bind a port");
    let addr = listener.local_addr().expect("the port's address");
    drop(listener);
    let storage = HttpStorage::new(&format!("http://{addr}"), HttpStorageConfig::default())
        .expect("build the storage client");
    start_over(storage).await
}

impl Service {
    /// Puts a book with `stock` copies at 12.99 EUR into the store.
    async fn add_book(&self, id: &str, stock: i64) {
        let book = Book {
            id: BookId::parse(id).expect("a valid book id"),
            details: BookDetails {
                title: format!("Title of {id}"),
                author: "An Author".to_owned(),
                price: Money::new(1299).expect("a valid price"),
                currency: Currency::parse("EUR").expect("a valid currency"),
                stock: Stock::new(stock).expect("a valid stock"),
            },
        };
        self.store.put_book(&book).await.expect("put the book");
    }

    async fn stock_of(&self, id: &str) -> i64 {
        let id = BookId::parse(id).expect("a valid book id");
        let book = self.store.book(&id).await.expect("read the book");
        book.details.stock.get()
    }

    async fn order(
        &self,
        book_id: &str,
        quantity: u32,
        user_id: &str,
        key: Option<&str>,
    ) -> Result<ResponseValue<Order>, Error<Problem>> {
        create_order(&self.client, book_id, quantity, user_id, key).await
    }
}

async fn create_order(
    client: &Client,
    book_id: &str,
    quantity: u32,
    user_id: &str,
    key: Option<&str>,
) -> Result<ResponseValue<Order>, Error<Problem>> {
    let mut request = client.create_order().body(
        CreateOrderRequest::builder()
            .book_id(book_id)
            .quantity(NonZeroU32::new(quantity).expect("a test quantity is not 0"))
            .user_id(user_id),
    );
    if let Some(key) = key {
        request = request.idempotency_key(key);
    }
    request.send().await
}

/// An order as JSON, to compare whole orders: the generated `Order` is not `PartialEq`.
fn json(order: &Order) -> serde_json::Value {
    serde_json::to_value(order).expect("an order serialises")
}

/// The typed Problem of an error answer with `status`, after checking its shape.
fn problem_of<T: std::fmt::Debug>(result: Result<T, Error<Problem>>, status: u16) -> Problem {
    let err = result.expect_err("an error answer");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{err:?}");
    let problem = order_processor_client::problem(&err)
        .unwrap_or_else(|| panic!("a typed Problem, got {err:?}"))
        .clone();
    assert_eq!(problem.status, i32::from(status));
    assert!(problem.type_.starts_with("/problems/"), "{problem:?}");
    assert!(!problem.title.is_empty(), "{problem:?}");
    problem
}

/// The fields a 400 Problem names.
fn fields(problem: &Problem) -> Vec<&str> {
    problem
        .errors
        .iter()
        .map(|error| error.field.as_str())
        .collect()
}

/// Checks a 503: a storage-unavailable Problem and a `Retry-After` of at least one second.
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, Error<Problem>>) {
    let err = result.expect_err("a 503");
    let retry_after = order_processor_client::retry_after(&err)
        .unwrap_or_else(|| panic!("a Retry-After in seconds, got {err:?}"));
    assert!(retry_after.as_secs() >= 1, "{retry_after:?}");
    assert_eq!(
        problem_of::<()>(Err(err), 503).type_,
        "/problems/storage-unavailable"
    );
}

#[tokio::test]
async fn create_order_confirms_the_order_takes_the_stock_and_answers_201_with_its_location() {
    let service = start().await;
    service.add_book("book-1", 5).await;

    let response = service
        .order("book-1", 2, "user-17", None)
        .await
        .expect("a confirmed order");

    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("an ASCII Location");
    assert_eq!(location, format!("/orders/{}", response.id));
    let order = response.into_inner();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.book_id.as_str(), "book-1");
    assert_eq!(order.user_id.as_str(), "user-17");
    assert_eq!(order.quantity.get(), 2);
    assert_eq!(*order.unit_price, 1299);
    assert_eq!(*order.total_price, 2598);
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.reason, None);
    assert_eq!(service.stock_of("book-1").await, 3);
}

#[tokio::test]
async fn get_order_reads_back_the_order_that_create_order_placed() {
    let service = start().await;
    service.add_book("book-1", 5).await;
    let placed = service.order("book-1", 1, "user-17", None).await.unwrap();

    let read = service
        .client
        .get_order()
        .id(placed.id)
        .send()
        .await
        .unwrap();

    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(json(&read), json(&placed));
}

#[tokio::test]
async fn list_user_orders_pages_through_a_users_orders_newest_first_with_limit_and_cursor() {
    let service = start().await;
    service.add_book("book-1", 10).await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(
            service
                .order("book-1", 1, "user-17", None)
                .await
                .unwrap()
                .id,
        );
    }
    service
        .order("book-1", 1, "someone-else", None)
        .await
        .unwrap();

    let mut listed = Vec::new();
    let mut page_sizes = Vec::new();
    let mut cursor = None;
    loop {
        let mut request = service
            .client
            .list_user_orders()
            .user_id("user-17")
            .limit(2u32);
        if let Some(cursor) = cursor.take() {
            request = request.cursor(cursor);
        }
        let page = request.send().await.unwrap().into_inner();
        page_sizes.push(page.items.len());
        listed.extend(page.items.iter().map(|order| order.id));
        assert!(
            page.items
                .iter()
                .all(|order| order.user_id.as_str() == "user-17")
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    placed.reverse();
    assert_eq!(listed, placed);
    assert_eq!(page_sizes, [2, 2, 1]);
}

#[tokio::test]
async fn list_user_orders_answers_an_empty_page_for_a_user_without_orders() {
    let service = start().await;

    let page = service
        .client
        .list_user_orders()
        .user_id("nobody")
        .send()
        .await
        .unwrap()
        .into_inner();

    assert!(page.items.is_empty());
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_and_body_answers_the_first_order_again() {
    let service = start().await;
    service.add_book("book-1", 5).await;

    let first = service
        .order("book-1", 2, "user-17", Some("purchase-1"))
        .await
        .unwrap();
    let retry = service
        .order("book-1", 2, "user-17", Some("purchase-1"))
        .await
        .unwrap();

    assert_eq!(json(&retry), json(&first));
    assert_eq!(
        service.stock_of("book-1").await,
        3,
        "the stock is taken once"
    );
}

#[tokio::test]
async fn health_live_and_ready_answer_up_while_the_store_answers() {
    let service = start().await;

    let health = service.client.health().send().await.unwrap();
    let live = service.client.health_live().send().await.unwrap();
    let ready = service.client.health_ready().send().await.unwrap();

    for response in [health, live, ready] {
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.status, HealthStatus::Up);
    }
}

#[tokio::test]
async fn a_quantity_above_1000_is_refused_with_400_naming_the_field() {
    // The generated Quantity enforces `minimum: 1` (it is a NonZeroU32) but not `maximum`, so
    // this is the one invalid body the typed client can still send.
    let service = start().await;
    service.add_book("book-1", 5000).await;

    let problem = problem_of(service.order("book-1", 1001, "user-17", None).await, 400);

    assert_eq!(problem.type_, "/problems/invalid-request");
    assert_eq!(fields(&problem), ["/quantity"]);
    assert_eq!(service.stock_of("book-1").await, 5000);
}

#[tokio::test]
async fn a_page_limit_above_100_is_refused_with_400_naming_the_parameter() {
    let service = start().await;

    let result = service
        .client
        .list_user_orders()
        .user_id("user-17")
        .limit(101u32)
        .send()
        .await;

    let problem = problem_of(result, 400);
    assert_eq!(problem.type_, "/problems/invalid-request");
    assert_eq!(fields(&problem), ["limit"]);
}

#[tokio::test]
async fn a_cursor_the_service_cannot_read_is_refused_with_400() {
    let service = start().await;

    let result = service
        .client
        .list_user_orders()
        .user_id("user-17")
        .cursor("not-a-cursor")
        .send()
        .await;

    let problem = problem_of(result, 400);
    assert_eq!(problem.type_, "/problems/invalid-request");
    assert_eq!(fields(&problem), ["cursor"]);
}

#[tokio::test]
async fn get_order_of_an_unknown_id_answers_404() {
    let service = start().await;

    let result = service
        .client
        .get_order()
        .id(uuid::Uuid::new_v4())
        .send()
        .await;

    assert_eq!(problem_of(result, 404).type_, "/problems/not-found");
}

#[tokio::test]
async fn an_order_beyond_the_stock_answers_409_with_the_id_of_the_rejected_order() {
    let service = start().await;
    service.add_book("book-1", 1).await;

    let problem = problem_of(service.order("book-1", 2, "user-17", None).await, 409);

    assert_eq!(problem.type_, "/problems/out-of-stock");
    let order_id = problem.order_id.expect("the rejected order's id");
    let order = service
        .client
        .get_order()
        .id(order_id)
        .send()
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Rejected);
    assert!(order.reason.is_some(), "{order:?}");
    assert_eq!(service.stock_of("book-1").await, 1, "no stock was taken");
}

#[tokio::test]
async fn an_unknown_book_answers_422() {
    let service = start().await;

    let problem = problem_of(service.order("no-such-book", 1, "user-17", None).await, 422);

    assert_eq!(problem.type_, "/problems/unknown-book");
    assert_eq!(problem.order_id, None);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_answers_422_and_places_nothing() {
    let service = start().await;
    service.add_book("book-1", 5).await;
    service
        .order("book-1", 1, "user-17", Some("purchase-1"))
        .await
        .unwrap();

    let problem = problem_of(
        service
            .order("book-1", 2, "user-17", Some("purchase-1"))
            .await,
        422,
    );

    assert_eq!(problem.type_, "/problems/idempotency-key-reused");
    assert_eq!(service.stock_of("book-1").await, 4);
}

#[tokio::test]
async fn every_order_operation_answers_503_with_retry_after_while_the_storage_is_down() {
    let (client, _stop) = start_with_storage_down().await;

    assert_unavailable(create_order(&client, "book-1", 1, "user-17", Some("purchase-1")).await);
    assert_unavailable(client.get_order().id(uuid::Uuid::new_v4()).send().await);
    assert_unavailable(client.list_user_orders().user_id("user-17").send().await);
}

#[tokio::test]
async fn readiness_answers_503_with_retry_after_but_liveness_stays_up_while_the_storage_is_down() {
    let (client, _stop) = start_with_storage_down().await;

    let ready = client.health_ready().send().await;
    let err = ready.as_ref().expect_err("not ready");
    assert!(err.is_retryable(), "{err:?}");
    assert_unavailable(ready);
    // A restart would not bring the storage back: liveness must not depend on it.
    assert_eq!(
        client.health().send().await.unwrap().status,
        HealthStatus::Up
    );
    assert_eq!(
        client.health_live().send().await.unwrap().status,
        HealthStatus::Up
    );
}

#[tokio::test]
async fn values_the_contract_forbids_are_refused_before_any_request_is_sent() {
    // The generated types check lengths and patterns, so these never reach the service (and
    // its 400): the SDK answers `InvalidRequest` without a round trip.
    let service = start().await;
    service.add_book("book-1", 5).await;
    let too_long = "b".repeat(65);

    for book_id in ["", "a/b", too_long.as_str(), "tab\tin-id"] {
        let result = service.order(book_id, 1, "user-17", None).await;
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{book_id:?}: {result:?}"
        );
    }
    let result = service
        .order("book-1", 1, "user-17", Some("has space"))
        .await;
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{result:?}"
    );
    let result = service
        .client
        .list_user_orders()
        .user_id("a/b")
        .send()
        .await;
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{result:?}"
    );
    let result = service
        .client
        .list_user_orders()
        .user_id("user-17")
        .cursor("not=base64url")
        .send()
        .await;
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{result:?}"
    );
    let result = service
        .client
        .list_user_orders()
        .user_id("user-17")
        .limit(0u32)
        .send()
        .await;
    assert!(
        matches!(result, Err(Error::InvalidRequest(_))),
        "{result:?}"
    );

    assert_eq!(service.stock_of("book-1").await, 5, "nothing was ordered");
}
