//! The reference Storage Service over real HTTP, on the store of the enclosing module: every
//! operation of `openapi/storage-service.yaml` and every error status it documents. Well-formed calls go
//! through the generated progenitor client, so that the client and the server are checked
//! against each other; malformed requests, which that client cannot even build, go through
//! plain `reqwest`.

use std::{
    collections::BTreeSet,
    fmt::Debug,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use order_processor::{
    domain::{
        model::{
            Book, BookId, NewOrder, Order, OrderId, OrderQuery, Page, Recorded, StatusChange,
            Stock, StockAllocation,
        },
        storage::{Catalogue, OrderStore, StorageError, StorageResult},
    },
    generated::storage_service::client::{Client, Error, ResponseValue, types},
    http::{server::Running, storage_api::spawn_reference_storage},
};
use serde_json::{Value, json};
use types::OrderStatus::{Confirmed, Failed, Pending, Rejected};
use uuid::Uuid;

/// The server's body limit, restated here so that a change to it has to be a decision.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Text that only an internal error carries. A Problem is built from a kind and a detail,
/// so none of it may ever reach a caller.
const INTERNAL_MARKERS: &[&str] = &[
    "sqlite",
    "rusqlite",
    "postgres",
    "db error",
    "panicked",
    "backtrace",
    "src/",
    ".rs:",
    "storage failed",
    SECRET,
];

/// The text of the errors `Breakable` raises.
const SECRET: &str = "secret-internal-detail";

use super::{Guard, open_store};
use crate::support::net::LOOPBACK;

/// A reference Storage Service on a free loopback port, and two ways to talk to it.
struct Service {
    client: Client,
    http: reqwest::Client,
    url: String,
    // Declared before the guard so that the server is told to stop before its database is
    // removed.
    _server: Running,
    _guard: Guard,
}

impl Service {
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Puts a book at 12.99 EUR with `stock` copies.
    async fn book(&self, id: &str, stock: i64) -> types::Book {
        self.client
            .put_book()
            .id(id)
            .body(book_input("A Title", 1299, stock))
            .send()
            .await
            .expect("put a book")
            .into_inner()
    }

    async fn stock(&self, book: &str) -> i64 {
        *self
            .client
            .get_book()
            .id(book)
            .send()
            .await
            .expect("read a book")
            .quantity
    }

    /// Records a new pending order and checks that it was created, not found.
    async fn order(&self, book: &str, user: &str, quantity: u32) -> types::Order {
        let response = self
            .client
            .create_order()
            .body(new_order(Uuid::new_v4(), book, user, quantity))
            .send()
            .await
            .expect("create an order");
        assert_eq!(response.status().as_u16(), 201);
        response.into_inner()
    }

    async fn get_order(&self, id: Uuid) -> types::Order {
        self.client
            .get_order()
            .id(id)
            .send()
            .await
            .expect("read an order")
            .into_inner()
    }

    async fn take(&self, id: Uuid) -> types::StockAllocation {
        self.client
            .take_stock()
            .id(id)
            .send()
            .await
            .expect("take the stock")
            .into_inner()
    }

    async fn change(
        &self,
        id: Uuid,
        from: types::OrderStatus,
        to: types::OrderStatus,
    ) -> Result<ResponseValue<types::Order>, Error<types::Problem>> {
        self.client
            .update_order_status()
            .id(id)
            .body(status_change(from, to, None))
            .send()
            .await
    }

    async fn list(
        &self,
        user: &str,
        limit: u32,
        cursor: Option<&types::Cursor>,
    ) -> types::OrderPage {
        let mut request = self.client.list_orders().user_id(user).limit(limit);
        if let Some(cursor) = cursor {
            request = request.cursor(cursor.clone());
        }
        request.send().await.expect("list orders").into_inner()
    }
}

/// Starts the service over a fresh store.
async fn start() -> Service {
    let (store, guard) = open_store().await;
    start_over(Arc::new(store), guard).await
}

async fn start_over<S: OrderStore + Catalogue>(storage: Arc<S>, guard: Guard) -> Service {
    let server = spawn_reference_storage(storage, LOOPBACK)
        .await
        .expect("start the reference Storage Service");
    let url = server.url();
    Service {
        client: Client::new(&url),
        http: reqwest::Client::new(),
        url,
        _server: server,
        _guard: guard,
    }
}

fn book_input(title: &str, price: i64, stock: i64) -> types::BookInput {
    types::BookInput::builder()
        .title(title)
        .author("An Author")
        .price(price)
        .currency("EUR")
        .quantity(stock)
        .try_into()
        .expect("a valid book")
}

fn new_order(id: Uuid, book: &str, user: &str, quantity: u32) -> types::NewOrder {
    types::NewOrder::builder()
        .order_id(id)
        .book_id(book)
        .user_id(user)
        .quantity(NonZeroU32::new(quantity).expect("a positive quantity"))
        .status(types::NewOrderStatus::Pending)
        .try_into()
        .expect("a valid order")
}

fn status_change(
    from: types::OrderStatus,
    to: types::OrderStatus,
    reason: Option<&str>,
) -> types::StatusChange {
    types::StatusChange {
        from,
        to,
        reason: reason.map(|reason| reason.try_into().expect("a valid reason")),
    }
}

/// What every error body shares: `type`, `title`, and a `status` equal to the HTTP status,
/// with nothing of an internal error in it.
fn check_problem(body: &Value, status: u16) {
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|type_| type_.starts_with("/problems/")),
        "{body}"
    );
    assert!(
        body["title"]
            .as_str()
            .is_some_and(|title| !title.is_empty()),
        "{body}"
    );
    let text = body.to_string().to_lowercase();
    for marker in INTERNAL_MARKERS {
        assert!(!text.contains(marker), "internal text {marker:?} in {body}");
    }
}

fn assert_json_content_type(headers: &reqwest::header::HeaderMap) {
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
}

/// The Problem of a typed call that must fail with `status`.
fn problem<T: Debug>(
    result: Result<ResponseValue<T>, Error<types::Problem>>,
    status: u16,
) -> types::Problem {
    match result {
        Err(Error::ErrorResponse(response)) => {
            assert_eq!(response.status().as_u16(), status, "{response:?}");
            assert_json_content_type(response.headers());
            let problem = response.into_inner();
            check_problem(&serde_json::to_value(&problem).unwrap(), status);
            problem
        }
        other => panic!("expected a {status} Problem, got {other:?}"),
    }
}

/// The Problem of a raw response that must have `status`.
async fn raw_problem(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read the body");
    assert_eq!(actual, status, "{text}");
    assert_json_content_type(&headers);
    let body: Value = serde_json::from_str(&text).expect("a JSON Problem");
    check_problem(&body, status);
    body
}

/// The first field a 400 Problem names.
fn field(problem: &Value) -> &str {
    problem["errors"][0]["field"].as_str().unwrap_or_default()
}

fn as_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

/// The routes that read a JSON body, with a body each would accept.
fn json_routes(order: Uuid) -> Vec<(reqwest::Method, String, Value)> {
    vec![
        (
            reqwest::Method::PUT,
            "/books/book-1".to_owned(),
            json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1}),
        ),
        (
            reqwest::Method::PUT,
            "/books/book-1/quantity".to_owned(),
            json!({"quantity": 1}),
        ),
        (
            reqwest::Method::POST,
            "/orders".to_owned(),
            json!({
                "orderId": order, "bookId": "book-1", "quantity": 1,
                "userId": "user-1", "status": "pending"
            }),
        ),
        (
            reqwest::Method::PUT,
            format!("/orders/{order}/status"),
            json!({"from": "pending", "to": "rejected"}),
        ),
    ]
}

/// A store that fails every call while `broken` is set, with errors whose text must not
/// reach the caller: the only way to make the service answer 500 and 503 on demand.
struct Breakable {
    inner: super::Store,
    broken: AtomicBool,
}

impl Breakable {
    fn check(&self) -> StorageResult<()> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StorageError::Failed(SECRET.into()))
        } else {
            Ok(())
        }
    }
}

impl OrderStore for Breakable {
    async fn create_order(&self, order: &NewOrder) -> StorageResult<Recorded> {
        self.check()?;
        self.inner.create_order(order).await
    }
    async fn order(&self, id: OrderId) -> StorageResult<Order> {
        self.check()?;
        self.inner.order(id).await
    }
    async fn orders(&self, query: &OrderQuery) -> StorageResult<Page<Order>> {
        self.check()?;
        self.inner.orders(query).await
    }
    async fn change_status(&self, id: OrderId, change: &StatusChange) -> StorageResult<Order> {
        self.check()?;
        self.inner.change_status(id, change).await
    }
    async fn cancel_order(&self, id: OrderId, reason: Option<&str>) -> StorageResult<Order> {
        self.check()?;
        self.inner.cancel_order(id, reason).await
    }
    async fn take_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        self.check()?;
        self.inner.take_stock(id).await
    }
    async fn return_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        self.check()?;
        self.inner.return_stock(id).await
    }
    async fn ping(&self) -> StorageResult<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable(SECRET.into()));
        }
        self.inner.ping().await
    }
}

/// Breaks the catalogue too: every operation of the service must answer its failure alike.
impl Catalogue for Breakable {
    async fn book(&self, id: &BookId) -> StorageResult<Book> {
        self.check()?;
        self.inner.book(id).await
    }
    async fn books(&self) -> StorageResult<Vec<Book>> {
        self.check()?;
        self.inner.books().await
    }
    async fn put_book(&self, book: &Book) -> StorageResult<Book> {
        self.check()?;
        self.inner.put_book(book).await
    }
    async fn set_stock(&self, id: &BookId, stock: Stock) -> StorageResult<Book> {
        self.check()?;
        self.inner.set_stock(id, stock).await
    }
}

async fn start_breakable() -> (Service, Arc<Breakable>) {
    let (inner, guard) = open_store().await;
    let store = Arc::new(Breakable {
        inner,
        broken: AtomicBool::new(false),
    });
    (start_over(store.clone(), guard).await, store)
}

// ---------------------------------------------------------------------------------------
// Books

#[tokio::test]
async fn put_book_creates_a_book_that_get_book_reads_back() {
    let service = start().await;

    let created = service
        .client
        .put_book()
        .id("book-1")
        .body(book_input("The Rust Programming Language", 3999, 10))
        .send()
        .await
        .expect("put a book");
    assert_eq!(created.status().as_u16(), 200);
    let read = service.client.get_book().id("book-1").send().await.unwrap();
    assert_eq!(read.status().as_u16(), 200);

    assert_eq!(
        as_json(&read.into_inner()),
        json!({
            "id": "book-1",
            "title": "The Rust Programming Language",
            "author": "An Author",
            "price": 3999,
            "currency": "EUR",
            "quantity": 10
        })
    );
    assert_eq!(as_json(&created.into_inner())["id"], "book-1");
}

#[tokio::test]
async fn put_book_replaces_the_details_and_stock_of_an_existing_book() {
    let service = start().await;
    service.book("book-1", 10).await;

    let replaced = service
        .client
        .put_book()
        .id("book-1")
        .body(book_input("Second Edition", 4599, 3))
        .send()
        .await
        .expect("replace a book")
        .into_inner();

    assert_eq!(replaced.title, "Second Edition");
    assert_eq!(*replaced.price, 4599);
    assert_eq!(*replaced.quantity, 3);
    let read = service.client.get_book().id("book-1").send().await.unwrap();
    assert_eq!(as_json(&read.into_inner()), as_json(&replaced));
    let all = service.client.list_books().send().await.unwrap();
    assert_eq!(all.items.len(), 1, "replacing must not add a book");
}

#[tokio::test]
async fn a_book_that_has_been_ordered_can_still_be_replaced_and_its_orders_keep_their_price() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 2).await;

    service
        .client
        .put_book()
        .id("book-1")
        .body(book_input("Cheaper", 999, 10))
        .send()
        .await
        .expect("replace an ordered book");

    let kept = service.get_order(order.id).await;
    assert_eq!(*kept.unit_price, 1299);
    assert_eq!(*kept.total_price, 2598);
    let later = service.order("book-1", "user-1", 2).await;
    assert_eq!(*later.unit_price, 999);
    assert_eq!(*later.total_price, 1998);
}

#[tokio::test]
async fn get_book_answers_404_for_an_unknown_id() {
    let service = start().await;

    let problem = problem(
        service.client.get_book().id("no-such-book").send().await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

#[tokio::test]
async fn book_ids_with_a_slash_a_control_character_or_over_64_characters_are_refused_with_400_naming_id()
 {
    let service = start().await;
    service.book("a", 1).await;
    let too_long = "x".repeat(65);
    let body = json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1});
    for id in [
        "a%2Fb",
        "a%00b",
        "a%1Fb",
        "a%7Fb",
        "a%C2%85b",
        "a%C2%9Fb",
        too_long.as_str(),
    ] {
        let get = service.http.get(service.at(&format!("/books/{id}")));
        let put = service
            .http
            .put(service.at(&format!("/books/{id}")))
            .json(&body);
        let quantity = service
            .http
            .put(service.at(&format!("/books/{id}/quantity")))
            .json(&json!({"quantity": 1}));
        for request in [get, put, quantity] {
            let problem = raw_problem(request.send().await.unwrap(), 400).await;
            assert_eq!(field(&problem), "id", "{id}: {problem}");
            assert_eq!(problem["type"], "/problems/invalid-request");
        }
    }
    let all = service.client.list_books().send().await.unwrap();
    assert_eq!(all.items.len(), 1, "no refused id may create a book");
}

#[tokio::test]
async fn book_ids_of_64_characters_of_any_script_are_accepted() {
    let service = start().await;
    // 64 characters but 128 bytes: the limit counts characters, as JSON Schema does.
    let id = "é".repeat(64);

    service.book(&id, 1).await;

    assert_eq!(service.stock(&id).await, 1);
}

#[tokio::test]
async fn put_book_refuses_fields_that_break_their_constraints_with_400_and_stores_nothing() {
    let service = start().await;
    let valid = json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1});
    let cases = [
        ("/title", json!({"title": ""})),
        ("/author", json!({"author": "x".repeat(501)})),
        ("/price", json!({"price": -1})),
        ("/price", json!({"price": 100_000_000_001_i64})),
        ("/currency", json!({"currency": "eur"})),
        ("/quantity", json!({"quantity": -1})),
        ("/quantity", json!({"quantity": 1_000_000_001})),
        ("/quantity", json!({"quantity": "1"})),
    ];
    for (pointer, change) in cases {
        let mut body = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = service
            .http
            .put(service.at("/books/book-1"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), pointer, "{body}: {problem}");
    }
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("title");
    let response = service
        .http
        .put(service.at("/books/book-1"))
        .json(&missing)
        .send()
        .await
        .unwrap();
    raw_problem(response, 400).await;

    problem(service.client.get_book().id("book-1").send().await, 404);
}

#[tokio::test]
async fn list_books_answers_every_book_ordered_by_id() {
    let service = start().await;
    let empty = service.client.list_books().send().await.unwrap();
    assert!(empty.items.is_empty());

    for id in ["book-b", "book-c", "book-a", "book-10", "book-2"] {
        service.book(id, 1).await;
    }
    let listed = service.client.list_books().send().await.unwrap();

    assert_eq!(listed.status().as_u16(), 200);
    let ids: Vec<&str> = listed.items.iter().map(|book| book.id.as_str()).collect();
    assert_eq!(
        ids,
        ["book-10", "book-2", "book-a", "book-b", "book-c"],
        "ordered by id, as text"
    );
}

#[tokio::test]
async fn set_book_quantity_sets_an_absolute_stock_level_and_keeps_the_details() {
    let service = start().await;
    let before = service.book("book-1", 10).await;

    let response = service
        .client
        .set_book_quantity()
        .id("book-1")
        .body(types::QuantityUpdate {
            quantity: types::Stock(25),
        })
        .send()
        .await
        .expect("set the stock");

    assert_eq!(response.status().as_u16(), 200);
    let after = response.into_inner();
    assert_eq!(*after.quantity, 25);
    assert_eq!((&after.title, *after.price), (&before.title, *before.price));
    assert_eq!(service.stock("book-1").await, 25);
    // Zero is a stock level like any other.
    service
        .client
        .set_book_quantity()
        .id("book-1")
        .body(types::QuantityUpdate {
            quantity: types::Stock(0),
        })
        .send()
        .await
        .expect("set the stock to zero");
    assert_eq!(service.stock("book-1").await, 0);
}

#[tokio::test]
async fn set_book_quantity_answers_404_for_an_unknown_book_and_creates_none() {
    let service = start().await;

    let problem = problem(
        service
            .client
            .set_book_quantity()
            .id("no-such-book")
            .body(types::QuantityUpdate {
                quantity: types::Stock(5),
            })
            .send()
            .await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
    let all = service.client.list_books().send().await.unwrap();
    assert!(all.items.is_empty());
}

#[tokio::test]
async fn set_book_quantity_refuses_a_negative_stock_with_400_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;

    let problem = problem(
        service
            .client
            .set_book_quantity()
            .id("book-1")
            .body(types::QuantityUpdate {
                quantity: types::Stock(-1),
            })
            .send()
            .await,
        400,
    );

    assert_eq!(problem.errors[0].field, "/quantity");
    assert_eq!(service.stock("book-1").await, 10);
}

// ---------------------------------------------------------------------------------------
// Creating and reading orders

#[tokio::test]
async fn create_order_answers_201_with_a_pending_order_at_the_books_current_price() {
    let service = start().await;
    service.book("book-1", 10).await;
    let id = Uuid::new_v4();

    let response = service
        .client
        .create_order()
        .body(new_order(id, "book-1", "user-17", 3))
        .send()
        .await
        .expect("create an order");

    assert_eq!(response.status().as_u16(), 201);
    let order = response.into_inner();
    assert_eq!(order.id, id);
    assert_eq!(order.book_id.as_str(), "book-1");
    assert_eq!(order.user_id.as_str(), "user-17");
    assert_eq!(order.quantity.get(), 3);
    assert_eq!(order.status, Pending);
    assert!(!order.stock_held);
    assert!(order.reason.is_none());
    assert_eq!((*order.unit_price, *order.total_price), (1299, 3897));
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.created_at, order.updated_at);
    // Recording an order takes no stock: that is `take_stock`'s job.
    assert_eq!(service.stock("book-1").await, 10);
}

#[tokio::test]
async fn creating_the_same_order_again_answers_200_with_the_same_record_whatever_its_status_now() {
    let service = start().await;
    service.book("book-1", 10).await;
    let body = new_order(Uuid::new_v4(), "book-1", "user-1", 2);
    let first = service
        .client
        .create_order()
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 201);

    let again = service
        .client
        .create_order()
        .body(body.clone())
        .send()
        .await
        .unwrap();

    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(as_json(&again.into_inner()), as_json(&first.into_inner()));

    service.take(body.order_id).await;
    service
        .change(body.order_id, Pending, Confirmed)
        .await
        .unwrap();
    let after_confirm = service
        .client
        .create_order()
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(after_confirm.status().as_u16(), 200);
    assert_eq!(after_confirm.status, Confirmed);
    assert_eq!(
        as_json(&after_confirm.into_inner()),
        as_json(&service.get_order(body.order_id).await)
    );
    let page = service.list("user-1", 100, None).await;
    assert_eq!(page.items.len(), 1, "one order, however often it is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_of_the_same_order_record_it_once_and_all_answer_the_same_record() {
    let service = start().await;
    service.book("book-1", 10).await;
    let body = new_order(Uuid::new_v4(), "book-1", "user-1", 1);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, body) = (service.client.clone(), body.clone());
        tasks.spawn(async move { client.create_order().body(body).send().await });
    }
    let responses: Vec<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| result.expect("every create succeeds"))
        .collect();

    let created = responses
        .iter()
        .filter(|response| response.status().as_u16() == 201)
        .count();
    assert_eq!(created, 1, "exactly one call creates the order");
    let records: BTreeSet<String> = responses
        .into_iter()
        .map(|response| as_json(&response.into_inner()).to_string())
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(service.list("user-1", 100, None).await.items.len(), 1);
}

#[tokio::test]
async fn an_order_id_in_upper_case_names_the_same_order() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 1).await;
    let upper = order.id.to_string().to_uppercase();

    let again = service
        .http
        .post(service.at("/orders"))
        .json(&json!({
            "orderId": upper, "bookId": "book-1", "quantity": 1,
            "userId": "user-1", "status": "pending"
        }))
        .send()
        .await
        .unwrap();
    let read = service
        .http
        .get(service.at(&format!("/orders/{upper}")))
        .send()
        .await
        .unwrap();

    assert_eq!(again.status().as_u16(), 200, "a retry, not a new order");
    assert_eq!(read.status().as_u16(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["id"], order.id.to_string());
}

#[tokio::test]
async fn creating_another_order_under_an_existing_id_answers_409_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    service.book("book-2", 10).await;
    let id = Uuid::new_v4();
    let original = service
        .client
        .create_order()
        .body(new_order(id, "book-1", "user-1", 2))
        .send()
        .await
        .unwrap()
        .into_inner();

    for other in [
        new_order(id, "book-1", "user-1", 3),
        new_order(id, "book-2", "user-1", 2),
        new_order(id, "book-1", "user-2", 2),
        // An unknown book under a taken id is still a conflict: the id decides first.
        new_order(id, "no-such-book", "user-1", 2),
    ] {
        let problem = problem(service.client.create_order().body(other).send().await, 409);
        assert_eq!(problem.type_, "/problems/conflict");
    }

    assert_eq!(
        as_json(&service.get_order(id).await),
        as_json(&original),
        "the first order stays as it was"
    );
    assert!(service.list("user-2", 100, None).await.items.is_empty());
}

#[tokio::test]
async fn create_order_for_an_unknown_book_answers_422_and_records_nothing() {
    let service = start().await;
    let id = Uuid::new_v4();

    let refused = problem(
        service
            .client
            .create_order()
            .body(new_order(id, "no-such-book", "user-1", 1))
            .send()
            .await,
        422,
    );

    assert_eq!(refused.type_, "/problems/unknown-book");
    problem(service.client.get_order().id(id).send().await, 404);
}

#[tokio::test]
async fn create_order_refuses_invalid_fields_with_400_naming_the_field_and_records_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let id = Uuid::new_v4();
    let valid = json!({
        "orderId": id, "bookId": "book-1", "quantity": 1, "userId": "user-1", "status": "pending"
    });
    let cases = [
        ("/quantity", json!({"quantity": 0})),
        ("/quantity", json!({"quantity": -1})),
        ("/quantity", json!({"quantity": 1001})),
        ("/quantity", json!({"quantity": 1.5})),
        ("/status", json!({"status": "confirmed"})),
        ("/status", json!({"status": "shipped"})),
        ("/orderId", json!({"orderId": "not-a-uuid"})),
        ("/bookId", json!({"bookId": "a/b"})),
        ("/bookId", json!({"bookId": ""})),
        ("/userId", json!({"userId": "line\nbreak"})),
        ("/userId", json!({"userId": "u".repeat(65)})),
        ("/bookId", json!({"bookId": null})),
    ];
    for (pointer, change) in cases {
        let mut body = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = service
            .http
            .post(service.at("/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), pointer, "{body}: {problem}");
    }
    for missing in ["orderId", "bookId", "quantity", "userId", "status"] {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(missing);
        let response = service
            .http
            .post(service.at("/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        raw_problem(response, 400).await;
    }

    problem(service.client.get_order().id(id).send().await, 404);
}

#[tokio::test]
async fn get_order_reads_back_the_recorded_order() {
    let service = start().await;
    service.book("book-1", 10).await;
    let created = service.order("book-1", "user-1", 1).await;

    let read = service
        .client
        .get_order()
        .id(created.id)
        .send()
        .await
        .unwrap();

    assert_eq!(read.status().as_u16(), 200);
    assert_eq!(as_json(&read.into_inner()), as_json(&created));
}

#[tokio::test]
async fn get_order_answers_404_for_an_unknown_id() {
    let service = start().await;

    let problem = problem(
        service.client.get_order().id(Uuid::new_v4()).send().await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

#[tokio::test]
async fn order_ids_that_are_not_uuids_are_refused_with_400_naming_id_on_every_order_route() {
    let service = start().await;
    let change = json!({"from": "pending", "to": "rejected"});
    for id in [
        "not-a-uuid",
        "1234",
        "0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5",
        "%00",
    ] {
        let requests = [
            service.http.get(service.at(&format!("/orders/{id}"))),
            service
                .http
                .put(service.at(&format!("/orders/{id}/status")))
                .json(&change),
            service.http.put(service.at(&format!("/orders/{id}/stock"))),
            service
                .http
                .delete(service.at(&format!("/orders/{id}/stock"))),
        ];
        for request in requests {
            let problem = raw_problem(request.send().await.unwrap(), 400).await;
            assert_eq!(field(&problem), "id", "{id}: {problem}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Listing orders

#[tokio::test]
async fn list_orders_answers_only_that_users_orders_newest_first() {
    let service = start().await;
    service.book("book-1", 10).await;
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(service.order("book-1", "user-1", 1).await.id);
        service.order("book-1", "user-2", 1).await;
    }

    let page = service
        .client
        .list_orders()
        .user_id("user-1")
        .send()
        .await
        .unwrap();

    assert_eq!(page.status().as_u16(), 200);
    let ids: Vec<Uuid> = page.items.iter().map(|order| order.id).collect();
    mine.reverse();
    assert_eq!(ids, mine);
    assert!(page.next_cursor.is_none());
    assert!(service.list("nobody", 10, None).await.items.is_empty());
}

#[tokio::test]
async fn list_orders_answers_20_orders_by_default() {
    let service = start().await;
    service.book("book-1", 10).await;
    for _ in 0..21 {
        service.order("book-1", "user-1", 1).await;
    }

    let page = service
        .client
        .list_orders()
        .user_id("user-1")
        .send()
        .await
        .unwrap();

    assert_eq!(page.items.len(), 20);
    assert!(page.next_cursor.is_some());
}

#[tokio::test]
async fn list_orders_filters_by_status() {
    let service = start().await;
    service.book("book-1", 10).await;
    let pending = service.order("book-1", "user-1", 1).await.id;
    let confirmed = service.order("book-1", "user-1", 1).await.id;
    let rejected = service.order("book-1", "user-1", 1).await.id;
    service.take(confirmed).await;
    service.change(confirmed, Pending, Confirmed).await.unwrap();
    service.change(rejected, Pending, Rejected).await.unwrap();

    for (status, expected) in [
        (Pending, vec![pending]),
        (Confirmed, vec![confirmed]),
        (Rejected, vec![rejected]),
        (Failed, vec![]),
    ] {
        let page = service
            .client
            .list_orders()
            .user_id("user-1")
            .status(status)
            .send()
            .await
            .unwrap();
        let ids: Vec<Uuid> = page.items.iter().map(|order| order.id).collect();
        assert_eq!(ids, expected, "{status}");
        assert!(page.items.iter().all(|order| order.status == status));
    }
}

#[tokio::test]
async fn list_orders_without_a_user_finds_pending_orders_created_before_an_instant() {
    let service = start().await;
    service.book("book-1", 10).await;
    let alice = service.order("book-1", "alice", 1).await.id;
    let bob = service.order("book-1", "bob", 1).await.id;
    let rejected = service.order("book-1", "carol", 1).await.id;
    service.change(rejected, Pending, Rejected).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cut = chrono::Utc::now();
    service.order("book-1", "dave", 1).await;

    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let mut request = service
            .client
            .list_orders()
            .status(Pending)
            .created_before(cut)
            .limit(1_u32);
        if let Some(cursor) = cursor.take() {
            request = request.cursor(cursor);
        }
        let page = request.send().await.unwrap().into_inner();
        ids.extend(page.items.iter().map(|order| order.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, [bob, alice], "pending, older than the cut, every user");
}

#[tokio::test]
async fn list_orders_pages_by_cursor_without_repeating_or_skipping_while_orders_arrive() {
    let service = start().await;
    service.book("book-1", 100).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(service.order("book-1", "user-1", 1).await.id);
    }

    let first = service.list("user-1", 2, None).await;
    // Orders that arrive between pages are newer than every page: none may appear later
    // on, nor push an order seen already onto the next page.
    let newer = [
        service.order("book-1", "user-1", 1).await.id,
        service.order("book-1", "user-1", 1).await.id,
    ];
    let second = service.list("user-1", 2, first.next_cursor.as_ref()).await;
    let third = service.list("user-1", 2, second.next_cursor.as_ref()).await;

    let seen: Vec<Uuid> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page.items.iter().map(|order| order.id))
        .collect();
    created.reverse();
    assert_eq!(
        seen, created,
        "each of the first five exactly once, newest first"
    );
    assert_eq!((first.items.len(), second.items.len()), (2, 2));
    assert!(third.next_cursor.is_none(), "the last page has no cursor");
    let fresh = service.list("user-1", 2, None).await;
    let fresh_ids: Vec<Uuid> = fresh.items.iter().map(|order| order.id).collect();
    assert_eq!(fresh_ids, [newer[1], newer[0]]);
}

#[tokio::test]
async fn a_last_page_that_is_exactly_full_has_no_cursor() {
    let service = start().await;
    service.book("book-1", 10).await;
    for _ in 0..4 {
        service.order("book-1", "user-1", 1).await;
    }

    let first = service.list("user-1", 2, None).await;
    let second = service.list("user-1", 2, first.next_cursor.as_ref()).await;

    assert!(first.next_cursor.is_some());
    assert_eq!(second.items.len(), 2);
    assert!(second.next_cursor.is_none());
}

#[tokio::test]
async fn list_orders_with_a_cursor_it_cannot_read_answers_400_naming_cursor() {
    let service = start().await;
    let too_long = "a".repeat(129);
    for cursor in [
        "abc",
        "0",
        "-1",
        "99999999999999999999999",
        "a.b",
        "%2F",
        "",
        too_long.as_str(),
    ] {
        let response = service
            .http
            .get(service.at(&format!("/orders?userId=user-1&cursor={cursor}")))
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), "cursor", "{cursor:?}: {problem}");
    }
}

#[tokio::test]
async fn list_orders_refuses_a_bad_user_limit_or_status_with_400_naming_the_parameter() {
    let service = start().await;
    for (query, name) in [
        ("userId=", "userId"),
        ("userId=a%2Fb", "userId"),
        ("userId=a%01b", "userId"),
        ("userId=u&limit=0", "limit"),
        ("userId=u&limit=101", "limit"),
        ("userId=u&limit=ten", "limit"),
        ("userId=u&status=shipped", "status"),
        ("createdBefore=yesterday", "createdBefore"),
    ] {
        let response = service
            .http
            .get(service.at(&format!("/orders?{query}")))
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), name, "{query}: {problem}");
    }
    // The typed client lets 101 through, so the server is the one that refuses it.
    problem(
        service
            .client
            .list_orders()
            .user_id("u")
            .limit(101_u32)
            .send()
            .await,
        400,
    );
}

// ---------------------------------------------------------------------------------------
// Status changes

#[tokio::test]
async fn an_order_that_holds_its_stock_moves_from_pending_to_confirmed() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 2).await;
    service.take(order.id).await;

    let response = service
        .client
        .update_order_status()
        .id(order.id)
        .body(status_change(
            Pending,
            Confirmed,
            Some("ignored for a confirmed order"),
        ))
        .send()
        .await
        .expect("confirm");

    assert_eq!(response.status().as_u16(), 200);
    let confirmed = response.into_inner();
    assert_eq!(confirmed.status, Confirmed);
    assert!(confirmed.stock_held);
    assert!(
        confirmed.reason.is_none(),
        "a confirmed order has no reason"
    );
    assert!(confirmed.updated_at >= order.updated_at);
    assert_eq!(
        as_json(&service.get_order(order.id).await),
        as_json(&confirmed)
    );
    assert_eq!(service.stock("book-1").await, 8);
}

#[tokio::test]
async fn pending_orders_move_to_rejected_or_failed_with_their_reason() {
    let service = start().await;
    service.book("book-1", 10).await;
    for to in [Rejected, Failed] {
        let order = service.order("book-1", "user-1", 1).await;

        let changed = service
            .client
            .update_order_status()
            .id(order.id)
            .body(status_change(Pending, to, Some("Book book-1 is sold out.")))
            .send()
            .await
            .expect("change the status")
            .into_inner();

        assert_eq!(changed.status, to);
        assert_eq!(
            changed.reason.as_deref().map(String::as_str),
            Some("Book book-1 is sold out.")
        );
        assert_eq!(service.get_order(order.id).await.status, to);
    }
}

#[tokio::test]
async fn confirming_an_order_that_does_not_hold_its_stock_answers_409_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let never_took = service.order("book-1", "user-1", 1).await;
    let gave_back = service.order("book-1", "user-1", 1).await;
    service.take(gave_back.id).await;
    service
        .client
        .return_stock()
        .id(gave_back.id)
        .send()
        .await
        .unwrap();

    for order in [&never_took, &gave_back] {
        let problem = problem(service.change(order.id, Pending, Confirmed).await, 409);
        assert_eq!(problem.type_, "/problems/conflict");
        let now = service.get_order(order.id).await;
        assert_eq!(now.status, Pending);
        assert!(!now.stock_held);
    }
    assert_eq!(service.stock("book-1").await, 10);
}

#[tokio::test]
async fn a_status_change_from_a_status_the_order_is_not_in_answers_409_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let rejected = service.order("book-1", "user-1", 1).await;
    service
        .change(rejected.id, Pending, Rejected)
        .await
        .unwrap();
    let confirmed = service.order("book-1", "user-1", 1).await;
    service.take(confirmed.id).await;
    service
        .change(confirmed.id, Pending, Confirmed)
        .await
        .unwrap();

    for (order, to) in [
        (&rejected, Failed),
        (&rejected, Confirmed),
        (&confirmed, Rejected),
        (&confirmed, Failed),
    ] {
        let before = service.get_order(order.id).await;
        let problem = problem(service.change(order.id, Pending, to).await, 409);
        assert_eq!(problem.type_, "/problems/conflict");
        assert_eq!(
            as_json(&service.get_order(order.id).await),
            as_json(&before),
            "pending -> {to}"
        );
    }
}

#[tokio::test]
async fn repeating_a_status_change_that_already_happened_answers_200_with_the_order_unchanged() {
    let service = start().await;
    service.book("book-1", 10).await;
    let rejected = service.order("book-1", "user-1", 1).await;
    let confirmed = service.order("book-1", "user-1", 1).await;
    service.take(confirmed.id).await;

    for (order, to) in [(&rejected, Rejected), (&confirmed, Confirmed)] {
        let first = service
            .change(order.id, Pending, to)
            .await
            .unwrap()
            .into_inner();
        let again = service.change(order.id, Pending, to).await.unwrap();
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(as_json(&again.into_inner()), as_json(&first), "{to}");
    }
}

#[tokio::test]
async fn a_status_change_no_order_can_make_answers_400_and_changes_nothing() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 1).await;
    service.take(order.id).await;

    for (from, to, pointer) in [
        (Pending, Pending, "/to"),
        (Confirmed, Failed, "/from"),
        (Confirmed, Confirmed, "/from"),
        (Rejected, Pending, "/from"),
        (Failed, Confirmed, "/from"),
    ] {
        let problem = problem(service.change(order.id, from, to).await, 400);
        assert_eq!(problem.errors[0].field, pointer, "{from} -> {to}");
    }
    // The same holds for an order that does not exist: the change itself is wrong.
    problem(service.change(Uuid::new_v4(), Pending, Pending).await, 400);

    let url = service.at(&format!("/orders/{}/status", order.id));
    for (body, pointer) in [
        (json!({"from": "pending", "to": "shipped"}), "/to"),
        (json!({"from": "pending"}), "/to"),
        (json!({"to": "rejected"}), "/from"),
        (
            json!({"from": "pending", "to": "rejected", "reason": ""}),
            "/reason",
        ),
        (
            json!({"from": "pending", "to": "rejected", "reason": "r".repeat(501)}),
            "/reason",
        ),
    ] {
        let response = service.http.put(&url).json(&body).send().await.unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), pointer, "{body}: {problem}");
    }

    let now = service.get_order(order.id).await;
    assert_eq!(now.status, Pending);
    assert!(now.stock_held);
}

#[tokio::test]
async fn update_order_status_answers_404_for_an_unknown_order() {
    let service = start().await;

    let problem = problem(service.change(Uuid::new_v4(), Pending, Rejected).await, 404);

    assert_eq!(problem.type_, "/problems/not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_status_changes_of_one_order_exactly_one_wins() {
    let service = start().await;
    service.book("book-1", 100).await;
    for _ in 0..10 {
        let order = service.order("book-1", "user-1", 1).await;
        service.take(order.id).await;
        let (confirm, fail) = tokio::join!(
            service.change(order.id, Pending, Confirmed),
            service.change(order.id, Pending, Failed)
        );
        let winner = match (confirm, fail) {
            (Ok(order), Err(loser)) => {
                problem(Err::<ResponseValue<()>, _>(loser), 409);
                order.into_inner()
            }
            (Err(loser), Ok(order)) => {
                problem(Err::<ResponseValue<()>, _>(loser), 409);
                order.into_inner()
            }
            other => panic!("exactly one change must win: {other:?}"),
        };
        assert_eq!(service.get_order(order.id).await.status, winner.status);
    }
}

// ---------------------------------------------------------------------------------------
// Taking stock

#[tokio::test]
async fn take_stock_answers_200_with_the_allocation_and_the_books_stock_after_it() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;

    let response = service
        .client
        .take_stock()
        .id(order.id)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        as_json(&response.into_inner()),
        json!({
            "orderId": order.id,
            "bookId": "book-1",
            "quantity": 3,
            "state": "held",
            "bookStock": 7
        })
    );
    assert_eq!(service.stock("book-1").await, 7);
    let now = service.get_order(order.id).await;
    assert!(now.stock_held);
    assert_eq!(now.status, Pending, "taking stock does not confirm");
}

#[tokio::test]
async fn repeating_take_stock_answers_the_same_allocation_and_takes_the_stock_once() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;

    let first = service.take(order.id).await;
    let again = service.take(order.id).await;

    assert_eq!(as_json(&again), as_json(&first));
    assert_eq!(service.stock("book-1").await, 7);
    // Confirmed, the order still answers a late retry of its take with its allocation.
    service.change(order.id, Pending, Confirmed).await.unwrap();
    assert_eq!(as_json(&service.take(order.id).await), as_json(&first));
    assert_eq!(service.stock("book-1").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_repeats_of_take_stock_for_one_order_take_its_stock_once() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 4).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let client = service.client.clone();
        tasks.spawn(async move { client.take_stock().id(order.id).send().await });
    }
    let allocations: BTreeSet<i64> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| *result.expect("every repeat succeeds").book_stock)
        .collect();

    assert_eq!(allocations, BTreeSet::from([6]));
    assert_eq!(service.stock("book-1").await, 6);
}

#[tokio::test]
async fn cancel_order_cancels_a_confirmed_order_and_gives_its_stock_back_once() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 4).await;
    service.take(order.id).await;
    service.change(order.id, Pending, Confirmed).await.unwrap();
    assert_eq!(service.stock("book-1").await, 6);

    let cancel = || {
        service
            .client
            .cancel_order()
            .id(order.id)
            .body(types::Cancellation { reason: None })
            .send()
    };
    let cancelled = cancel().await.unwrap().into_inner();
    assert_eq!(cancelled.status, types::OrderStatus::Cancelled);
    assert!(!cancelled.stock_held);
    assert_eq!(service.stock("book-1").await, 10);
    let again = cancel().await.unwrap().into_inner();
    assert_eq!(
        again.updated_at, cancelled.updated_at,
        "nothing changed the second time"
    );
    assert_eq!(service.stock("book-1").await, 10);

    let pending = service.order("book-1", "user-1", 1).await;
    let refused = problem(
        service
            .client
            .cancel_order()
            .id(pending.id)
            .body(types::Cancellation { reason: None })
            .send()
            .await,
        409,
    );
    assert_eq!(refused.type_, "/problems/conflict");
    assert_eq!(service.get_order(pending.id).await.status, Pending);
}

#[tokio::test]
async fn take_stock_answers_409_out_of_stock_takes_nothing_and_the_refusal_stands() {
    let service = start().await;
    service.book("book-1", 2).await;
    let order = service.order("book-1", "user-1", 3).await;

    let refusal = problem(service.client.take_stock().id(order.id).send().await, 409);

    assert_eq!(refusal.type_, "/problems/out-of-stock");
    assert_eq!(refusal.title, "Out of stock");
    assert_eq!(refusal.available, Some(2));
    assert!(
        refusal
            .detail
            .as_deref()
            .is_some_and(|detail| detail.contains("2 copies")),
        "{refusal:?}"
    );
    assert_eq!(service.stock("book-1").await, 2);
    let now = service.get_order(order.id).await;
    assert!(!now.stock_held);
    assert_eq!(now.status, Pending);
    // The refusal is recorded: a retry of the order after restocking meets it again, so
    // the order ends rejected as its first attempt decided.
    service
        .client
        .set_book_quantity()
        .id("book-1")
        .body(types::QuantityUpdate {
            quantity: types::Stock(3),
        })
        .send()
        .await
        .unwrap();
    let again = problem(service.client.take_stock().id(order.id).send().await, 409);
    assert_eq!(again.type_, "/problems/out-of-stock");
    assert_eq!(again.available, Some(3));
    assert_eq!(service.stock("book-1").await, 3);
    let closed = service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, types::AllocationState::Refused);
    assert_eq!(service.stock("book-1").await, 3);
}

#[tokio::test]
async fn take_stock_for_an_order_that_is_no_longer_pending_answers_409_conflict_and_changes_nothing()
 {
    let service = start().await;
    service.book("book-1", 10).await;
    for to in [Rejected, Failed] {
        let order = service.order("book-1", "user-1", 1).await;
        service.change(order.id, Pending, to).await.unwrap();

        let problem = problem(service.client.take_stock().id(order.id).send().await, 409);

        assert_eq!(problem.type_, "/problems/conflict", "{to}");
        assert!(!service.get_order(order.id).await.stock_held);
    }
    assert_eq!(service.stock("book-1").await, 10);
}

#[tokio::test]
async fn take_stock_answers_404_for_an_unknown_order() {
    let service = start().await;

    let problem = problem(
        service.client.take_stock().id(Uuid::new_v4()).send().await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

// ---------------------------------------------------------------------------------------
// Returning stock

#[tokio::test]
async fn return_stock_gives_the_stock_back_once_however_often_it_is_repeated() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;
    service.take(order.id).await;
    service.change(order.id, Pending, Failed).await.unwrap();

    let response = service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        as_json(&response.into_inner()),
        json!({
            "orderId": order.id,
            "bookId": "book-1",
            "quantity": 3,
            "state": "returned",
            "bookStock": 10
        })
    );
    for _ in 0..3 {
        let again = service
            .client
            .return_stock()
            .id(order.id)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(again.state, types::AllocationState::Returned);
        assert_eq!(*again.book_stock, 10);
    }
    assert_eq!(service.stock("book-1").await, 10);
    let now = service.get_order(order.id).await;
    assert!(!now.stock_held);
    assert_eq!(now.status, Failed);
}

#[tokio::test]
async fn a_pending_order_that_gave_its_stock_back_cannot_take_it_again() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;
    service.take(order.id).await;
    service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .unwrap();

    let problem = problem(service.client.take_stock().id(order.id).send().await, 409);

    assert_eq!(problem.type_, "/problems/conflict");
    assert_eq!(service.stock("book-1").await, 10);
    assert!(!service.get_order(order.id).await.stock_held);
}

#[tokio::test]
async fn return_stock_for_a_confirmed_order_answers_409_and_the_order_keeps_its_stock() {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;
    service.take(order.id).await;
    service.change(order.id, Pending, Confirmed).await.unwrap();

    let problem = problem(service.client.return_stock().id(order.id).send().await, 409);

    assert_eq!(problem.type_, "/problems/conflict");
    assert_eq!(service.stock("book-1").await, 7);
    let now = service.get_order(order.id).await;
    assert!(now.stock_held);
    assert_eq!(now.status, Confirmed);
}

#[tokio::test]
async fn return_stock_before_take_leaves_a_tombstone_so_a_later_take_answers_409_and_moves_no_stock()
 {
    let service = start().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 3).await;

    let returned = service
        .client
        .return_stock()
        .id(order.id)
        .send()
        .await
        .expect("return before take")
        .into_inner();

    assert_eq!(returned.state, types::AllocationState::Returned);
    assert_eq!((returned.quantity.get(), *returned.book_stock), (3, 10));
    let late_take = problem(service.client.take_stock().id(order.id).send().await, 409);
    assert_eq!(late_take.type_, "/problems/conflict");
    assert_eq!(service.stock("book-1").await, 10);
    let now = service.get_order(order.id).await;
    assert!(!now.stock_held);
    assert_eq!(now.status, Pending);
    problem(service.change(order.id, Pending, Confirmed).await, 409);
}

#[tokio::test]
async fn return_stock_answers_404_for_an_unknown_order() {
    let service = start().await;

    let problem = problem(
        service
            .client
            .return_stock()
            .id(Uuid::new_v4())
            .send()
            .await,
        404,
    );

    assert_eq!(problem.type_, "/problems/not-found");
}

// ---------------------------------------------------------------------------------------
// Concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn parallel_take_stock_calls_never_oversell_and_the_held_quantities_add_up() {
    const INITIAL: i64 = 10;
    let service = start().await;
    service.book("book-1", INITIAL).await;
    let mut orders = Vec::new();
    for i in 0..40 {
        orders.push(service.order("book-1", "user-1", i % 3 + 1).await);
    }

    let mut tasks = tokio::task::JoinSet::new();
    for order in &orders {
        let client = service.client.clone();
        let (id, quantity) = (order.id, i64::from(order.quantity.get()));
        tasks.spawn(async move { (id, quantity, client.take_stock().id(id).send().await) });
    }
    let mut taken = Vec::new();
    let mut refused = Vec::new();
    for (id, quantity, result) in tasks.join_all().await {
        match result {
            Ok(allocation) => {
                assert_eq!(allocation.order_id, id);
                taken.push((quantity, *allocation.book_stock));
            }
            Err(err) => {
                let problem = problem(Err::<ResponseValue<()>, _>(err), 409);
                assert_eq!(problem.type_, "/problems/out-of-stock");
                refused.push(quantity);
            }
        }
    }

    let stock = service.stock("book-1").await;
    let held: i64 = taken.iter().map(|(quantity, _)| quantity).sum();
    assert!(stock >= 0);
    assert_eq!(
        held + stock,
        INITIAL,
        "every copy is in stock or held, once"
    );
    // Each take answered the stock it left; in that order the takes form one serial
    // history from the initial stock down to the final one.
    taken.sort_by_key(|(_, after)| std::cmp::Reverse(*after));
    let mut level = INITIAL;
    for (quantity, after) in &taken {
        level -= quantity;
        assert_eq!(*after, level, "history {taken:?}");
    }
    // Stock only went down, so a refused order asked for more than is left even now.
    assert!(
        refused.iter().all(|quantity| *quantity > stock),
        "refused {refused:?} with {stock} left"
    );
    let holding = futures::future::join_all(orders.iter().map(|order| service.get_order(order.id)))
        .await
        .iter()
        .filter(|order| order.stock_held)
        .map(|order| i64::from(order.quantity.get()))
        .sum::<i64>();
    assert_eq!(holding, held, "stockHeld agrees with the allocations");
}

// ---------------------------------------------------------------------------------------
// Health

#[tokio::test]
async fn health_answers_200_up() {
    let service = start().await;

    let response = service.client.health().send().await.unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(as_json(&response.into_inner()), json!({"status": "up"}));
}

// ---------------------------------------------------------------------------------------
// Problems the router and the body reader answer

#[tokio::test]
async fn an_unknown_route_answers_404_problem() {
    let service = start().await;
    for path in ["/nope", "/books/book-1/nope", "/orders/x/y/z", "/"] {
        let response = service.http.get(service.at(path)).send().await.unwrap();
        let problem = raw_problem(response, 404).await;
        assert_eq!(problem["type"], "/problems/not-found", "{path}");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_problem_with_allow_naming_the_methods_of_the_path() {
    let service = start().await;
    let order = format!("/orders/{}", Uuid::new_v4());
    let cases = [
        (
            reqwest::Method::DELETE,
            "/books/book-1".to_owned(),
            "GET, PUT",
        ),
        (reqwest::Method::POST, "/books".to_owned(), "GET"),
        (
            reqwest::Method::GET,
            "/books/book-1/quantity".to_owned(),
            "PUT",
        ),
        (reqwest::Method::DELETE, "/orders".to_owned(), "GET, POST"),
        (reqwest::Method::PUT, order.clone(), "GET"),
        (reqwest::Method::GET, format!("{order}/status"), "PUT"),
        (
            reqwest::Method::PATCH,
            format!("{order}/stock"),
            "DELETE, PUT",
        ),
        (reqwest::Method::POST, "/health".to_owned(), "GET"),
    ];
    for (method, path, allow) in cases {
        let response = service
            .http
            .request(method.clone(), service.at(&path))
            .send()
            .await
            .unwrap();
        let header = response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let problem = raw_problem(response, 405).await;
        let methods = |list: &str| -> BTreeSet<String> {
            list.split(',').map(|m| m.trim().to_owned()).collect()
        };
        assert_eq!(methods(&header), methods(allow), "{method} {path}");
        assert_eq!(problem["type"], "/problems/method-not-allowed");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_answers_413_problem_whether_sized_or_chunked_and_64_kib_is_read() {
    let service = start().await;
    let book = json!({"title": "T", "author": "A", "price": 1, "currency": "EUR", "quantity": 1})
        .to_string();
    // Trailing white space keeps the JSON valid at any size.
    let padded = |size: usize| {
        let mut bytes = book.clone().into_bytes();
        bytes.resize(size, b' ');
        bytes
    };

    let at_limit = service
        .http
        .put(service.at("/books/book-1"))
        .header("content-type", "application/json")
        .body(padded(MAX_BODY_BYTES))
        .send()
        .await
        .unwrap();
    assert_eq!(
        at_limit.status().as_u16(),
        200,
        "exactly 64 KiB is accepted"
    );

    let sized = service
        .http
        .put(service.at("/books/book-2"))
        .header("content-type", "application/json")
        .body(padded(MAX_BODY_BYTES + 1))
        .send()
        .await
        .unwrap();
    raw_problem(sized, 413).await;

    // Chunked: no Content-Length announces the size, so the reader has to count.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = padded(MAX_BODY_BYTES + 1)
        .chunks(4096)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let chunked = service
        .http
        .post(service.at("/orders"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let too_large = raw_problem(chunked, 413).await;
    assert_eq!(too_large["type"], "/problems/payload-too-large");

    problem(service.client.get_book().id("book-2").send().await, 404);
}

#[tokio::test]
async fn malformed_json_answers_400_problem_on_every_route_that_reads_a_body() {
    let service = start().await;
    for (method, path, _) in json_routes(Uuid::new_v4()) {
        for body in ["", "{", "{\"title\":", "[]", "null", "\"text\"", "{} {}"] {
            let response = service
                .http
                .request(method.clone(), service.at(&path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let problem = raw_problem(response, 400).await;
            assert_eq!(
                problem["type"], "/problems/invalid-request",
                "{method} {path} {body:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_answers_a_problem_whose_status_is_the_http_status() {
    let service = start().await;
    service.book("book-1", 10).await;
    for (method, path, body) in json_routes(Uuid::new_v4()) {
        for content_type in [Some("text/plain"), Some("application/xml"), None] {
            let mut request = service
                .http
                .request(method.clone(), service.at(&path))
                .body(body.to_string());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            // The contract documents 400 for a malformed request; 415 is the precise
            // answer. Either will do, as long as the body says the same as the status line.
            let status = response.status().as_u16();
            assert!(
                status == 400 || status == 415,
                "{method} {path} {content_type:?}: {status}"
            );
            raw_problem(response, status).await;
        }
    }
    assert_eq!(service.stock("book-1").await, 10, "nothing was changed");
}

// ---------------------------------------------------------------------------------------
// Failures of the store

#[tokio::test]
async fn a_failing_store_answers_500_problem_on_every_operation_without_its_error_text() {
    let (service, store) = start_breakable().await;
    service.book("book-1", 10).await;
    let order = service.order("book-1", "user-1", 1).await;
    store.broken.store(true, Ordering::SeqCst);
    let client = &service.client;

    let problems = [
        problem(client.list_books().send().await, 500),
        problem(client.get_book().id("book-1").send().await, 500),
        problem(
            client
                .put_book()
                .id("book-1")
                .body(book_input("T", 1, 1))
                .send()
                .await,
            500,
        ),
        problem(
            client
                .set_book_quantity()
                .id("book-1")
                .body(types::QuantityUpdate {
                    quantity: types::Stock(1),
                })
                .send()
                .await,
            500,
        ),
        problem(client.list_orders().user_id("user-1").send().await, 500),
        problem(
            client
                .create_order()
                .body(new_order(Uuid::new_v4(), "book-1", "user-1", 1))
                .send()
                .await,
            500,
        ),
        problem(client.get_order().id(order.id).send().await, 500),
        problem(service.change(order.id, Pending, Rejected).await, 500),
        problem(client.take_stock().id(order.id).send().await, 500),
        problem(client.return_stock().id(order.id).send().await, 500),
    ];

    for problem in problems {
        assert_eq!(problem.type_, "/problems/internal");
    }
}

#[tokio::test]
async fn health_answers_503_problem_when_the_database_does_not_answer_and_200_once_it_does() {
    let (service, store) = start_breakable().await;
    store.broken.store(true, Ordering::SeqCst);

    let problem = problem(service.client.health().send().await, 503);

    assert_eq!(problem.type_, "/problems/storage-unavailable");
    store.broken.store(false, Ordering::SeqCst);
    let health = service.client.health().send().await.unwrap();
    assert_eq!(health.status, types::HealthStatus::Up);
}

// ---------------------------------------------------------------------------------------
// Amounts

#[tokio::test]
async fn the_most_expensive_book_in_the_largest_quantity_has_a_valid_total() {
    let service = start().await;
    // The largest price and the largest quantity the contract allows: `Money` is bounded so
    // that their product is still an amount.
    service
        .client
        .put_book()
        .id("dear")
        .body(book_input("Dear", 100_000_000_000, 1000))
        .send()
        .await
        .expect("the largest price is a valid price");

    let order = service
        .client
        .create_order()
        .body(new_order(Uuid::new_v4(), "dear", "user-1", 1000))
        .send()
        .await
        .expect("the order is recorded");

    assert_eq!(order.total_price.0, 100_000_000_000_000);
}
