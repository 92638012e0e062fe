//! The reference Storage Service: the interface generated from `openapi/storage-service.yaml`,
//! implemented over any adapter of the storage port. Wire types become domain values at this
//! boundary, and each storage outcome becomes the one status the contract documents for the
//! operation; an outcome an operation does not document is an internal error.
//!
//! [`spawn_reference_storage`] starts the service in-process, for tests that need a real
//! Storage Service on an ephemeral port.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use poem::{Endpoint, Response};
use poem_openapi::payload::Json;

use crate::{
    domain::{
        model::{
            AllocationState, Book, BookDetails, BookId, Currency, Money, NewOrder, OrderId,
            OrderQuery, OrderStatus, StatusChange, Stock, StockAllocation,
        },
        orders::copies,
        storage::{Catalogue, OrderStore, StorageError},
    },
    generated::storage_service::server::{
        self as api, AllocationState as ApiAllocationState, Book as ApiBook, BookInput, BookList,
        CancelOrderResponse, Cancellation, CreateOrderResponse, GetBookResponse, GetOrderResponse,
        Handlers, Health, HealthResponse, HealthStatus, ListBooksResponse, ListOrdersResponse,
        NewOrder as ApiNewOrder, Order as ApiOrder, OrderPage, OrderStatus as ApiOrderStatus,
        Problem as ApiProblem, PutBookResponse, QuantityUpdate, ReturnStockResponse,
        SetBookQuantityResponse, StatusChange as ApiStatusChange,
        StockAllocation as ApiStockAllocation, TakeStockResponse, UpdateOrderStatusResponse,
    },
    telemetry::ErrorChain,
};

use super::{
    RETRY_AFTER_SECONDS,
    problem::{self, Problem},
    server::{self, Running, Server},
    wire::{self, order_to_wire, same_variants},
};

/// How long `/health` waits for the database: a store stuck on a lock must not hang the
/// probe that is meant to detect it.
const HEALTH_DEADLINE: Duration = Duration::from_secs(2);

/// The Storage Service's handlers over one storage adapter.
pub struct StorageApi<S> {
    storage: Arc<S>,
}

impl<S> StorageApi<S> {
    pub fn new(storage: Arc<S>) -> Self {
        Self { storage }
    }
}

/// The whole reference Storage Service over `storage`: its API, `/docs`, the spec, and the
/// middleware both services share.
pub fn app<S: OrderStore + Catalogue>(storage: Arc<S>) -> impl Endpoint<Output = Response> {
    server::app::<_, ApiProblem>(api::service(StorageApi::new(storage)), api::ROUTES)
}

/// Binds the reference Storage Service over `storage` to `addr` (port 0 picks a free port)
/// and serves it on a Tokio task until [`Running::stop`] or drop. Must be called inside a
/// Tokio runtime. Keep a clone of `storage` to seed or inspect the store directly.
pub async fn spawn_reference_storage<S: OrderStore + Catalogue>(
    storage: Arc<S>,
    addr: SocketAddr,
) -> io::Result<Running> {
    Ok(Server::bind(addr).await?.spawn(app(storage)))
}

fn problem_body(problem: Problem) -> Json<ApiProblem> {
    Json(problem.into())
}

/// Logs a storage error, or an outcome the operation does not expect, with its whole chain;
/// the caller only learns that something went wrong.
fn internal(operation: &'static str, err: &StorageError) -> Json<ApiProblem> {
    tracing::error!(operation, error = %ErrorChain(err), "storage operation failed");
    problem_body(Problem::new(
        problem::INTERNAL,
        "an unexpected error occurred",
    ))
}

/// The database is away or saturated: logged, and answered as a 503 that invites a retry,
/// since every operation can be repeated safely.
fn unavailable(operation: &'static str, err: &StorageError) -> Json<ApiProblem> {
    tracing::warn!(operation, error = %ErrorChain(err), "the database is unavailable");
    problem_body(Problem::new(
        problem::STORAGE_UNAVAILABLE,
        "the database does not answer; try again shortly",
    ))
}

fn refused(detail: String) -> Json<ApiProblem> {
    problem_body(Problem::new(problem::INVALID_REQUEST, detail))
}

fn conflict(detail: String) -> Json<ApiProblem> {
    problem_body(Problem::new(problem::CONFLICT, detail))
}

fn no_book() -> Json<ApiProblem> {
    problem_body(Problem::new(problem::NOT_FOUND, "no book has this id"))
}

fn no_order() -> Json<ApiProblem> {
    problem_body(Problem::new(problem::NOT_FOUND, "no order has this id"))
}

fn book_id(value: &str, field: &str) -> Result<BookId, Problem> {
    BookId::parse(value).map_err(|err| Problem::invalid_field(field, err.0))
}

fn book_details(body: BookInput) -> Result<BookDetails, Problem> {
    Ok(BookDetails {
        title: body.title,
        author: body.author,
        price: Money::price(body.price).map_err(|err| Problem::invalid_field("/price", err.0))?,
        currency: Currency::parse(&body.currency)
            .map_err(|err| Problem::invalid_field("/currency", err.0))?,
        stock: Stock::new(body.quantity)
            .map_err(|err| Problem::invalid_field("/quantity", err.0))?,
    })
}

fn new_order(body: ApiNewOrder) -> Result<NewOrder, Problem> {
    // `status` can only be `pending`: the generated enum has no other value.
    let request = wire::order_request(&body.book_id, &body.user_id, body.quantity)?;
    Ok(NewOrder {
        id: OrderId(body.order_id),
        book_id: request.book_id,
        user_id: request.user_id,
        quantity: request.quantity,
    })
}

fn order_query(
    user_id: Option<String>,
    status: Option<ApiOrderStatus>,
    created_before: Option<DateTime<Utc>>,
    limit: i32,
    cursor: Option<String>,
) -> Result<OrderQuery, Problem> {
    Ok(OrderQuery {
        status: status.map(Into::into),
        created_before,
        ..wire::order_query(user_id.as_deref(), limit, cursor)?
    })
}

fn status_change(body: ApiStatusChange) -> Result<StatusChange, Problem> {
    let from = OrderStatus::from(body.from);
    let to = OrderStatus::from(body.to);
    // Refused here, whatever the store would say, because the contract makes it a 400 and no
    // stored state can make such a change valid.
    if !from.can_become(to) {
        let field = if from == OrderStatus::Pending {
            "/to"
        } else {
            "/from"
        };
        return Err(Problem::invalid_field(
            field,
            format!(
                "an order moves only from pending to confirmed, rejected or failed, not from {} to {}",
                from.as_str(),
                to.as_str()
            ),
        ));
    }
    Ok(StatusChange {
        from,
        to,
        reason: body.reason,
    })
}

same_variants!(OrderStatus <=> ApiOrderStatus: Pending, Confirmed, Rejected, Failed, Cancelled);
same_variants!(AllocationState => ApiAllocationState: Held, Returned, Refused);
order_to_wire!(ApiOrder, OrderPage, stock_held);

impl From<Book> for ApiBook {
    fn from(book: Book) -> Self {
        Self {
            id: book.id.to_string(),
            title: book.details.title,
            author: book.details.author,
            price: book.details.price.minor_units(),
            currency: book.details.currency.as_str().to_owned(),
            quantity: book.details.stock.get(),
        }
    }
}

impl From<StockAllocation> for ApiStockAllocation {
    fn from(allocation: StockAllocation) -> Self {
        Self {
            order_id: allocation.order_id.0,
            book_id: allocation.book_id.to_string(),
            quantity: wire::quantity(allocation.quantity),
            state: allocation.state.into(),
            book_stock: allocation.book_stock.get(),
        }
    }
}

impl<S: OrderStore> StorageApi<S> {
    /// The detail of a 409 out-of-stock: what is available and what the order asked for. The
    /// port's error only carries the stock, so the order is read again for its book and
    /// quantity, which never change once recorded.
    async fn out_of_stock_detail(&self, id: OrderId, available: Option<i64>) -> String {
        let stock = available.map_or_else(|| "not enough copies".to_owned(), copies);
        match self.storage.order(id).await {
            Ok(order) => format!(
                "Book {} has {stock} in stock; order {id} asked for {}.",
                order.book_id,
                order.quantity.get()
            ),
            Err(err) => {
                tracing::warn!(order_id = %id, error = %ErrorChain(&err), "cannot read an out-of-stock order");
                format!("The book has {stock} in stock, fewer than order {id} asked for.")
            }
        }
    }
}

impl<S: OrderStore + Catalogue> Handlers for StorageApi<S> {
    async fn list_books(&self) -> ListBooksResponse {
        match self.storage.books().await {
            Ok(books) => ListBooksResponse::Ok(Json(BookList {
                items: books.into_iter().map(Into::into).collect(),
            })),
            Err(err @ StorageError::Unavailable(_)) => ListBooksResponse::ServiceUnavailable(
                unavailable("list_books", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => ListBooksResponse::InternalServerError(internal("list_books", &err)),
        }
    }

    async fn get_book(&self, id: String) -> GetBookResponse {
        let id = match book_id(&id, "id") {
            Ok(id) => id,
            Err(problem) => return GetBookResponse::BadRequest(problem_body(problem)),
        };
        match self.storage.book(&id).await {
            Ok(book) => GetBookResponse::Ok(Json(book.into())),
            Err(StorageError::NotFound) => GetBookResponse::NotFound(no_book()),
            Err(StorageError::Refused(detail)) => GetBookResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => GetBookResponse::ServiceUnavailable(
                unavailable("get_book", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => GetBookResponse::InternalServerError(internal("get_book", &err)),
        }
    }

    async fn put_book(&self, id: String, body: BookInput) -> PutBookResponse {
        let book = match book_id(&id, "id")
            .and_then(|id| book_details(body).map(|details| details.with_id(id)))
        {
            Ok(book) => book,
            Err(problem) => return PutBookResponse::BadRequest(problem_body(problem)),
        };
        match self.storage.put_book(&book).await {
            Ok(book) => PutBookResponse::Ok(Json(book.into())),
            Err(StorageError::Refused(detail)) => PutBookResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => PutBookResponse::ServiceUnavailable(
                unavailable("put_book", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => PutBookResponse::InternalServerError(internal("put_book", &err)),
        }
    }

    async fn set_book_quantity(&self, id: String, body: QuantityUpdate) -> SetBookQuantityResponse {
        let parsed = book_id(&id, "id").and_then(|id| {
            Stock::new(body.quantity)
                .map(|stock| (id, stock))
                .map_err(|err| Problem::invalid_field("/quantity", err.0))
        });
        let (id, stock) = match parsed {
            Ok(parsed) => parsed,
            Err(problem) => return SetBookQuantityResponse::BadRequest(problem_body(problem)),
        };
        match self.storage.set_stock(&id, stock).await {
            Ok(book) => SetBookQuantityResponse::Ok(Json(book.into())),
            Err(StorageError::NotFound) => SetBookQuantityResponse::NotFound(no_book()),
            Err(StorageError::Refused(detail)) => {
                SetBookQuantityResponse::BadRequest(refused(detail))
            }
            Err(err @ StorageError::Unavailable(_)) => SetBookQuantityResponse::ServiceUnavailable(
                unavailable("set_book_quantity", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => {
                SetBookQuantityResponse::InternalServerError(internal("set_book_quantity", &err))
            }
        }
    }

    async fn list_orders(
        &self,
        user_id: Option<String>,
        status: Option<ApiOrderStatus>,
        created_before: Option<DateTime<Utc>>,
        limit: i32,
        cursor: Option<String>,
    ) -> ListOrdersResponse {
        let query = match order_query(user_id, status, created_before, limit, cursor) {
            Ok(query) => query,
            Err(problem) => return ListOrdersResponse::BadRequest(problem_body(problem)),
        };
        match self.storage.orders(&query).await {
            Ok(page) => ListOrdersResponse::Ok(Json(page.into())),
            Err(StorageError::InvalidCursor) => ListOrdersResponse::BadRequest(problem_body(
                Problem::invalid_field("cursor", "the cursor is not one this service issued"),
            )),
            Err(StorageError::Refused(detail)) => ListOrdersResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => ListOrdersResponse::ServiceUnavailable(
                unavailable("list_orders", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => ListOrdersResponse::InternalServerError(internal("list_orders", &err)),
        }
    }

    async fn create_order(&self, body: ApiNewOrder) -> CreateOrderResponse {
        let order = match new_order(body) {
            Ok(order) => order,
            Err(problem) => return CreateOrderResponse::BadRequest(problem_body(problem)),
        };
        match self.storage.create_order(&order).await {
            Ok(recorded) if recorded.created => {
                CreateOrderResponse::Created(Json(recorded.order.into()))
            }
            Ok(recorded) => CreateOrderResponse::Ok(Json(recorded.order.into())),
            Err(StorageError::Conflict(_)) => CreateOrderResponse::Conflict(conflict(format!(
                "order {} already exists with other content; nothing changed",
                order.id
            ))),
            Err(StorageError::UnknownBook) => {
                CreateOrderResponse::UnprocessableEntity(problem_body(Problem::new(
                    problem::UNKNOWN_BOOK,
                    format!("no book in the catalogue has the id {}", order.book_id),
                )))
            }
            Err(StorageError::Refused(detail)) => CreateOrderResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => CreateOrderResponse::ServiceUnavailable(
                unavailable("create_order", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => CreateOrderResponse::InternalServerError(internal("create_order", &err)),
        }
    }

    async fn get_order(&self, id: uuid::Uuid) -> GetOrderResponse {
        match self.storage.order(OrderId(id)).await {
            Ok(order) => GetOrderResponse::Ok(Json(order.into())),
            Err(StorageError::NotFound) => GetOrderResponse::NotFound(no_order()),
            Err(StorageError::Refused(detail)) => GetOrderResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => GetOrderResponse::ServiceUnavailable(
                unavailable("get_order", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => GetOrderResponse::InternalServerError(internal("get_order", &err)),
        }
    }

    async fn update_order_status(
        &self,
        id: uuid::Uuid,
        body: ApiStatusChange,
    ) -> UpdateOrderStatusResponse {
        let change = match status_change(body) {
            Ok(change) => change,
            Err(problem) => return UpdateOrderStatusResponse::BadRequest(problem_body(problem)),
        };
        match self.storage.change_status(OrderId(id), &change).await {
            Ok(order) => UpdateOrderStatusResponse::Ok(Json(order.into())),
            Err(StorageError::NotFound) => UpdateOrderStatusResponse::NotFound(no_order()),
            Err(StorageError::Conflict(detail)) => {
                UpdateOrderStatusResponse::Conflict(conflict(detail))
            }
            Err(StorageError::Refused(detail)) => {
                UpdateOrderStatusResponse::BadRequest(refused(detail))
            }
            Err(err @ StorageError::Unavailable(_)) => {
                UpdateOrderStatusResponse::ServiceUnavailable(
                    unavailable("update_order_status", &err),
                    RETRY_AFTER_SECONDS,
                )
            }
            Err(err) => UpdateOrderStatusResponse::InternalServerError(internal(
                "update_order_status",
                &err,
            )),
        }
    }

    async fn cancel_order(&self, id: uuid::Uuid, body: Cancellation) -> CancelOrderResponse {
        match self
            .storage
            .cancel_order(OrderId(id), body.reason.as_deref())
            .await
        {
            Ok(order) => CancelOrderResponse::Ok(Json(order.into())),
            Err(StorageError::NotFound) => CancelOrderResponse::NotFound(no_order()),
            Err(StorageError::Conflict(detail)) => CancelOrderResponse::Conflict(conflict(detail)),
            Err(StorageError::Refused(detail)) => CancelOrderResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => CancelOrderResponse::ServiceUnavailable(
                unavailable("cancel_order", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => CancelOrderResponse::InternalServerError(internal("cancel_order", &err)),
        }
    }

    async fn take_stock(&self, id: uuid::Uuid) -> TakeStockResponse {
        let id = OrderId(id);
        match self.storage.take_stock(id).await {
            Ok(allocation) => TakeStockResponse::Ok(Json(allocation.into())),
            Err(StorageError::NotFound) => TakeStockResponse::NotFound(no_order()),
            Err(StorageError::OutOfStock { available }) => {
                let detail = self.out_of_stock_detail(id, available).await;
                let mut problem = Problem::new(problem::OUT_OF_STOCK, detail);
                problem.available = available;
                TakeStockResponse::Conflict(problem_body(problem))
            }
            Err(StorageError::Conflict(detail)) => TakeStockResponse::Conflict(conflict(detail)),
            Err(StorageError::Refused(detail)) => TakeStockResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => TakeStockResponse::ServiceUnavailable(
                unavailable("take_stock", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => TakeStockResponse::InternalServerError(internal("take_stock", &err)),
        }
    }

    async fn return_stock(&self, id: uuid::Uuid) -> ReturnStockResponse {
        match self.storage.return_stock(OrderId(id)).await {
            Ok(allocation) => ReturnStockResponse::Ok(Json(allocation.into())),
            Err(StorageError::NotFound) => ReturnStockResponse::NotFound(no_order()),
            Err(StorageError::Conflict(detail)) => ReturnStockResponse::Conflict(conflict(detail)),
            Err(StorageError::Refused(detail)) => ReturnStockResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => ReturnStockResponse::ServiceUnavailable(
                unavailable("return_stock", &err),
                RETRY_AFTER_SECONDS,
            ),
            Err(err) => ReturnStockResponse::InternalServerError(internal("return_stock", &err)),
        }
    }

    async fn health(&self) -> HealthResponse {
        let failure = match tokio::time::timeout(HEALTH_DEADLINE, self.storage.ping()).await {
            Ok(Ok(())) => {
                return HealthResponse::Ok(Json(Health {
                    status: HealthStatus::Up,
                }));
            }
            Ok(Err(err)) => ErrorChain(&err).to_string(),
            Err(elapsed) => ErrorChain(&elapsed).to_string(),
        };
        tracing::warn!(error = %failure, "the database does not answer");
        HealthResponse::ServiceUnavailable(problem_body(Problem::new(
            problem::STORAGE_UNAVAILABLE,
            "the database does not answer",
        )))
    }
}
