//! The reference Storage Service: the interface generated from `openapi/storage-service.yaml`,
//! implemented over any adapter of the storage port. Wire types become domain values at this
//! boundary, and each storage outcome becomes the one status the contract documents for the
//! operation; an outcome an operation does not document is an internal error.
//!
//! [`spawn_reference_storage`] starts the service in-process, for tests that need a real
//! Storage Service on an ephemeral port.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use poem::{Endpoint, Response, http::StatusCode};

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
        Handlers, Health, HealthResponse, HealthStatus, JsonAnswer, ListBooksResponse,
        ListOrdersResponse, NewOrder as ApiNewOrder, Order as ApiOrder, OrderPage,
        OrderStatus as ApiOrderStatus, Problem as ApiProblem, PutBookResponse, QuantityUpdate,
        ReturnStockResponse, SetBookQuantityResponse, StatusChange as ApiStatusChange,
        StockAllocation as ApiStockAllocation, TakeStockResponse, UpdateOrderStatusResponse,
    },
    telemetry::ErrorChain,
};

use super::{
    problem::{self, Problem},
    server::{self, Running, Server},
    unexpected::Unexpected,
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
    server::app::<_, ApiProblem>(
        api::service(StorageApi::new(storage)),
        api::ROUTES,
        api::document_additions,
    )
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

fn problem_body(problem: Problem) -> JsonAnswer<ApiProblem> {
    JsonAnswer(problem.into())
}

/// The database is away or saturated: answered as a 503 that invites a retry, since every
/// operation can be repeated safely.
fn unavailable(err: StorageError) -> Unexpected {
    Unexpected::unavailable(err, "the database does not answer; try again shortly")
}

fn refused(detail: String) -> JsonAnswer<ApiProblem> {
    problem_body(Problem::new(problem::INVALID_REQUEST, detail))
}

fn conflict(detail: String) -> JsonAnswer<ApiProblem> {
    problem_body(Problem::new(problem::CONFLICT, detail))
}

fn no_book() -> JsonAnswer<ApiProblem> {
    problem_body(Problem::new(problem::NOT_FOUND, "no book has this id"))
}

fn no_order() -> JsonAnswer<ApiProblem> {
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
    async fn list_books(&self) -> Result<ListBooksResponse, Unexpected> {
        Ok(match self.storage.books().await {
            Ok(books) => ListBooksResponse::Ok(JsonAnswer(BookList {
                items: books.into_iter().map(Into::into).collect(),
            })),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn get_book(&self, id: String) -> Result<GetBookResponse, Unexpected> {
        let id = match book_id(&id, "id") {
            Ok(id) => id,
            Err(problem) => return Ok(GetBookResponse::BadRequest(problem_body(problem))),
        };
        Ok(match self.storage.book(&id).await {
            Ok(book) => GetBookResponse::Ok(JsonAnswer(book.into())),
            Err(StorageError::NotFound) => GetBookResponse::NotFound(no_book()),
            Err(StorageError::Refused(detail)) => GetBookResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn put_book(&self, id: String, body: BookInput) -> Result<PutBookResponse, Unexpected> {
        let book = match book_id(&id, "id")
            .and_then(|id| book_details(body).map(|details| details.with_id(id)))
        {
            Ok(book) => book,
            Err(problem) => return Ok(PutBookResponse::BadRequest(problem_body(problem))),
        };
        Ok(match self.storage.put_book(&book).await {
            Ok(book) => PutBookResponse::Ok(JsonAnswer(book.into())),
            Err(StorageError::Refused(detail)) => PutBookResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn set_book_quantity(
        &self,
        id: String,
        body: QuantityUpdate,
    ) -> Result<SetBookQuantityResponse, Unexpected> {
        let parsed = book_id(&id, "id").and_then(|id| {
            Stock::new(body.quantity)
                .map(|stock| (id, stock))
                .map_err(|err| Problem::invalid_field("/quantity", err.0))
        });
        let (id, stock) = match parsed {
            Ok(parsed) => parsed,
            Err(problem) => return Ok(SetBookQuantityResponse::BadRequest(problem_body(problem))),
        };
        Ok(match self.storage.set_stock(&id, stock).await {
            Ok(book) => SetBookQuantityResponse::Ok(JsonAnswer(book.into())),
            Err(StorageError::NotFound) => SetBookQuantityResponse::NotFound(no_book()),
            Err(StorageError::Refused(detail)) => {
                SetBookQuantityResponse::BadRequest(refused(detail))
            }
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn list_orders(
        &self,
        user_id: Option<String>,
        status: Option<ApiOrderStatus>,
        created_before: Option<DateTime<Utc>>,
        limit: i32,
        cursor: Option<String>,
    ) -> Result<ListOrdersResponse, Unexpected> {
        let query = match order_query(user_id, status, created_before, limit, cursor) {
            Ok(query) => query,
            Err(problem) => return Ok(ListOrdersResponse::BadRequest(problem_body(problem))),
        };
        Ok(match self.storage.orders(&query).await {
            Ok(page) => ListOrdersResponse::Ok(JsonAnswer(page.into())),
            Err(StorageError::InvalidCursor) => ListOrdersResponse::BadRequest(problem_body(
                Problem::invalid_field("cursor", "the cursor is not one this service issued"),
            )),
            Err(StorageError::Refused(detail)) => ListOrdersResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn create_order(&self, body: ApiNewOrder) -> Result<CreateOrderResponse, Unexpected> {
        let order = match new_order(body) {
            Ok(order) => order,
            Err(problem) => return Ok(CreateOrderResponse::BadRequest(problem_body(problem))),
        };
        Ok(match self.storage.create_order(&order).await {
            Ok(recorded) if recorded.created => {
                CreateOrderResponse::Created(JsonAnswer(recorded.order.into()))
            }
            Ok(recorded) => CreateOrderResponse::Ok(JsonAnswer(recorded.order.into())),
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
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn get_order(&self, id: uuid::Uuid) -> Result<GetOrderResponse, Unexpected> {
        Ok(match self.storage.order(OrderId(id)).await {
            Ok(order) => GetOrderResponse::Ok(JsonAnswer(order.into())),
            Err(StorageError::NotFound) => GetOrderResponse::NotFound(no_order()),
            Err(StorageError::Refused(detail)) => GetOrderResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn update_order_status(
        &self,
        id: uuid::Uuid,
        body: ApiStatusChange,
    ) -> Result<UpdateOrderStatusResponse, Unexpected> {
        let change = match status_change(body) {
            Ok(change) => change,
            Err(problem) => {
                return Ok(UpdateOrderStatusResponse::BadRequest(problem_body(problem)));
            }
        };
        Ok(
            match self.storage.change_status(OrderId(id), &change).await {
                Ok(order) => UpdateOrderStatusResponse::Ok(JsonAnswer(order.into())),
                Err(StorageError::NotFound) => UpdateOrderStatusResponse::NotFound(no_order()),
                Err(StorageError::Conflict(detail)) => {
                    UpdateOrderStatusResponse::Conflict(conflict(detail))
                }
                Err(StorageError::Refused(detail)) => {
                    UpdateOrderStatusResponse::BadRequest(refused(detail))
                }
                Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
                Err(err) => return Err(Unexpected::internal(err)),
            },
        )
    }

    async fn cancel_order(
        &self,
        id: uuid::Uuid,
        body: Cancellation,
    ) -> Result<CancelOrderResponse, Unexpected> {
        Ok(
            match self
                .storage
                .cancel_order(OrderId(id), body.reason.as_deref())
                .await
            {
                Ok(order) => CancelOrderResponse::Ok(JsonAnswer(order.into())),
                Err(StorageError::NotFound) => CancelOrderResponse::NotFound(no_order()),
                Err(StorageError::Conflict(detail)) => {
                    CancelOrderResponse::Conflict(conflict(detail))
                }
                Err(StorageError::Refused(detail)) => {
                    CancelOrderResponse::BadRequest(refused(detail))
                }
                Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
                Err(err) => return Err(Unexpected::internal(err)),
            },
        )
    }

    async fn take_stock(&self, id: uuid::Uuid) -> Result<TakeStockResponse, Unexpected> {
        let id = OrderId(id);
        Ok(match self.storage.take_stock(id).await {
            Ok(allocation) => TakeStockResponse::Ok(JsonAnswer(allocation.into())),
            Err(StorageError::NotFound) => TakeStockResponse::NotFound(no_order()),
            Err(StorageError::OutOfStock { available }) => {
                let detail = self.out_of_stock_detail(id, available).await;
                let mut problem = Problem::new(problem::OUT_OF_STOCK, detail);
                problem.available = available;
                TakeStockResponse::Conflict(problem_body(problem))
            }
            Err(StorageError::Conflict(detail)) => TakeStockResponse::Conflict(conflict(detail)),
            Err(StorageError::Refused(detail)) => TakeStockResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn return_stock(&self, id: uuid::Uuid) -> Result<ReturnStockResponse, Unexpected> {
        Ok(match self.storage.return_stock(OrderId(id)).await {
            Ok(allocation) => ReturnStockResponse::Ok(JsonAnswer(allocation.into())),
            Err(StorageError::NotFound) => ReturnStockResponse::NotFound(no_order()),
            Err(StorageError::Conflict(detail)) => ReturnStockResponse::Conflict(conflict(detail)),
            Err(StorageError::Refused(detail)) => ReturnStockResponse::BadRequest(refused(detail)),
            Err(err @ StorageError::Unavailable(_)) => return Err(unavailable(err)),
            Err(err) => return Err(Unexpected::internal(err)),
        })
    }

    async fn health(&self) -> HealthResponse {
        let failure: Box<dyn std::error::Error + Send + Sync> =
            match tokio::time::timeout(HEALTH_DEADLINE, self.storage.ping()).await {
                Ok(Ok(())) => {
                    return HealthResponse::Ok(JsonAnswer(Health {
                        status: HealthStatus::Up,
                    }));
                }
                Ok(Err(err)) => err.into(),
                Err(elapsed) => elapsed.into(),
            };
        // The 503 is the only error that the probe documents.
        let problem = Unexpected::unavailable(failure, "the database does not answer")
            .into_problem("health", StatusCode::SERVICE_UNAVAILABLE);
        HealthResponse::ServiceUnavailable(problem_body(problem))
    }
}
