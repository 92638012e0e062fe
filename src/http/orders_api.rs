//! The Order Processor's HTTP handlers: they implement the interface generated from
//! `openapi/order-processor.yaml`, turn wire types into domain values, call the order flow,
//! and map each domain outcome to one documented status. The server's middleware has checked
//! the caller's token and scopes; the handlers hold a caller to their own orders unless the
//! token may act for any user.

use std::{sync::Arc, time::Duration};

use poem::http::StatusCode;

use crate::{
    access::{self, Principal},
    domain::{
        model::{IdempotencyKey, OrderId, OrderStatus},
        orders::{
            CancelOrderError, ListOrdersError, OrderService, PlaceOrderError, ReadOrderError,
        },
        storage::OrderStore,
    },
    generated::order_processor::server::{
        CancelOrderRequest, CancelOrderResponse, CreateOrderRequest, CreateOrderResponse,
        GetOrderResponse, Handlers, Health, HealthLiveResponse, HealthReadyResponse,
        HealthResponse, HealthStatus, JsonAnswer, ListUserOrdersResponse, Order as ApiOrder,
        OrderPage, OrderStatus as ApiOrderStatus, Problem as ApiProblem,
    },
    metrics::{self, Refusal},
};

use super::{
    RETRY_AFTER_SECONDS,
    problem::{self, Problem},
    unexpected::Unexpected,
    user_limit::UserLimit,
    wire::{self, order_to_wire, same_variants},
};

/// How long readiness waits for the storage.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// The scope of a token that acts for any user, such as the Books Service's.
const ANY_USER: &str = "orders:any-user";

/// The caller when their token holds them to their own orders: `None` with open access or a
/// token that may act for any user.
fn held_to_own_orders() -> Option<Principal> {
    access::caller().filter(|caller| !caller.has_scope(ANY_USER))
}

/// The `403` of a caller acting for another user, saying which scope would allow it.
fn another_user(what: &str) -> JsonAnswer<ApiProblem> {
    problem_body(Problem::new(
        problem::FORBIDDEN,
        format!(
            "the token is for another user: {what} for another user needs the scope {ANY_USER}"
        ),
    ))
}

/// The `404` of an unknown order, also answered for another user's order, so that a caller
/// cannot tell one from the other.
fn no_order() -> JsonAnswer<ApiProblem> {
    problem_body(Problem::new(problem::NOT_FOUND, "no order has this id"))
}

pub struct OrdersApi<S> {
    orders: Arc<OrderService<S>>,
    /// The per-user order limit; `None`: no limit.
    user_limit: Option<Arc<UserLimit>>,
}

impl<S> OrdersApi<S> {
    pub fn new(orders: Arc<OrderService<S>>, user_limit: Option<Arc<UserLimit>>) -> Self {
        Self { orders, user_limit }
    }
}

fn problem_body(problem: Problem) -> JsonAnswer<ApiProblem> {
    JsonAnswer(problem.into())
}

/// The detail of a 503: the caller only learns the kind of the infrastructure error.
const STORAGE_DID_NOT_ANSWER: &str = "the storage did not answer; retry later";

fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Unexpected {
    Unexpected::unavailable(err, STORAGE_DID_NOT_ANSWER)
}

same_variants!(OrderStatus => ApiOrderStatus: Pending, Confirmed, Rejected, Failed, Cancelled);
order_to_wire!(ApiOrder, OrderPage);

fn up() -> JsonAnswer<Health> {
    JsonAnswer(Health {
        status: HealthStatus::Up,
    })
}

impl<S: OrderStore> Handlers for OrdersApi<S> {
    async fn create_order(
        &self,
        idempotency_key: Option<String>,
        body: CreateOrderRequest,
    ) -> Result<CreateOrderResponse, Unexpected> {
        let request = match wire::order_request(&body.book_id, &body.user_id, body.quantity) {
            Ok(request) => request,
            Err(problem) => return Ok(CreateOrderResponse::BadRequest(problem_body(problem))),
        };
        if held_to_own_orders().is_some_and(|caller| caller.subject() != request.user_id.as_str()) {
            return Ok(CreateOrderResponse::Forbidden(
                another_user("placing an order"),
                None,
            ));
        }
        let key = match idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
        {
            Ok(key) => key,
            Err(err) => {
                return Ok(CreateOrderResponse::BadRequest(problem_body(
                    Problem::invalid_field("Idempotency-Key", err.0),
                )));
            }
        };
        if let Some(limit) = &self.user_limit
            && let Err(refused) = limit.admit(&request.user_id)
        {
            metrics::refused(Refusal::Rate);
            let detail = format!(
                "this user has placed the {} orders a minute allowed on this replica; retry after the given delay",
                limit.per_minute()
            );
            // At most 60: the slowest limit admits one order a minute.
            let retry_after = i32::try_from(refused.retry_after_seconds()).unwrap_or(i32::MAX);
            return Ok(CreateOrderResponse::TooManyRequests(
                problem_body(Problem::new(problem::RATE_LIMITED, detail)),
                retry_after,
            ));
        }
        let placed = match self.orders.place(request, key.as_ref()).await {
            Ok(placed) => placed,
            Err(PlaceOrderError::UnknownBook) => {
                return Ok(CreateOrderResponse::UnprocessableEntity(problem_body(
                    Problem::new(
                        problem::UNKNOWN_BOOK,
                        "no book in the catalogue has this bookId",
                    ),
                )));
            }
            Err(PlaceOrderError::IdempotencyKeyReused) => {
                return Ok(CreateOrderResponse::UnprocessableEntity(problem_body(
                    Problem::new(
                        problem::IDEMPOTENCY_KEY_REUSED,
                        "this Idempotency-Key was already used with another body; use a new key for a new order",
                    ),
                )));
            }
            Err(PlaceOrderError::Unavailable { order_id, source }) => {
                return Err(unavailable(source).with_order_id(order_id.map(|id| id.0)));
            }
            Err(PlaceOrderError::Internal(err)) => return Err(Unexpected::internal(err)),
        };
        // Absent rather than `false` on a first answer, as clients of other APIs that send
        // this header expect.
        let replayed = placed.replayed.then_some(true);
        let order = placed.order;
        let reason = order.reason.clone();
        Ok(match order.status {
            // A keyed retry of a purchase that was confirmed and cancelled since: its outcome
            // was the sale, and the order says where it stands now.
            OrderStatus::Confirmed | OrderStatus::Cancelled => {
                let location = format!("/orders/{}", order.id);
                CreateOrderResponse::Created(JsonAnswer(order.into()), location, replayed)
            }
            OrderStatus::Rejected => CreateOrderResponse::Conflict(
                problem_body(
                    Problem::new(
                        problem::OUT_OF_STOCK,
                        reason.unwrap_or_else(|| "not enough stock".to_owned()),
                    )
                    .with_order_id(order.id.0),
                ),
                replayed,
            ),
            OrderStatus::Failed => {
                let reason = reason.as_deref().unwrap_or("processing failed");
                return Err(
                    Unexpected::internal(format!("order {} failed: {reason}", order.id))
                        .with_detail(format!("the order failed: {reason}"))
                        .with_order_id(Some(order.id.0)),
                );
            }
            OrderStatus::Pending => {
                return Err(Unexpected::internal(format!(
                    "order {} came back from the flow still pending",
                    order.id
                )));
            }
        })
    }

    async fn cancel_order(
        &self,
        id: uuid::Uuid,
        body: CancelOrderRequest,
    ) -> Result<CancelOrderResponse, Unexpected> {
        // The order is read first: another user's is answered as unknown, and left as it is.
        if let Some(caller) = held_to_own_orders() {
            match self.orders.order(OrderId(id)).await {
                Ok(order) if order.user_id.as_str() == caller.subject() => {}
                Ok(_) | Err(ReadOrderError::NotFound) => {
                    return Ok(CancelOrderResponse::NotFound(no_order()));
                }
                Err(ReadOrderError::Unavailable(err)) => return Err(unavailable(err)),
                Err(ReadOrderError::Internal(err)) => return Err(Unexpected::internal(err)),
            }
        }
        Ok(
            match self
                .orders
                .cancel(OrderId(id), body.reason.as_deref())
                .await
            {
                Ok(order) => CancelOrderResponse::Ok(JsonAnswer(order.into())),
                Err(CancelOrderError::NotFound) => CancelOrderResponse::NotFound(no_order()),
                Err(CancelOrderError::NotConfirmed(status)) => {
                    let why = match status {
                        OrderStatus::Pending => "it is still being processed; try again shortly",
                        _ => "it holds no stock to give back",
                    };
                    CancelOrderResponse::Conflict(problem_body(
                        Problem::new(
                            problem::NOT_CANCELLABLE,
                            format!("order {id} is {}: {why}", status.as_str()),
                        )
                        .with_order_id(id),
                    ))
                }
                Err(CancelOrderError::Unavailable(err)) => return Err(unavailable(err)),
                Err(CancelOrderError::Internal(err)) => return Err(Unexpected::internal(err)),
            },
        )
    }

    async fn get_order(&self, id: uuid::Uuid) -> Result<GetOrderResponse, Unexpected> {
        Ok(match self.orders.order(OrderId(id)).await {
            Ok(order)
                if held_to_own_orders()
                    .is_some_and(|caller| caller.subject() != order.user_id.as_str()) =>
            {
                GetOrderResponse::NotFound(no_order())
            }
            Ok(order) => GetOrderResponse::Ok(JsonAnswer(order.into())),
            Err(ReadOrderError::NotFound) => GetOrderResponse::NotFound(no_order()),
            Err(ReadOrderError::Unavailable(err)) => return Err(unavailable(err)),
            Err(ReadOrderError::Internal(err)) => return Err(Unexpected::internal(err)),
        })
    }

    async fn list_user_orders(
        &self,
        user_id: String,
        limit: i32,
        cursor: Option<String>,
    ) -> Result<ListUserOrdersResponse, Unexpected> {
        let query = match wire::order_query(Some(&user_id), limit, cursor) {
            Ok(query) => query,
            Err(problem) => return Ok(ListUserOrdersResponse::BadRequest(problem_body(problem))),
        };
        if held_to_own_orders().is_some_and(|caller| caller.subject() != user_id) {
            return Ok(ListUserOrdersResponse::Forbidden(
                another_user("listing the orders"),
                None,
            ));
        }
        Ok(match self.orders.orders(&query).await {
            Ok(page) => ListUserOrdersResponse::Ok(JsonAnswer(page.into())),
            Err(ListOrdersError::InvalidCursor) => {
                ListUserOrdersResponse::BadRequest(problem_body(Problem::invalid_field(
                    "cursor",
                    "the cursor cannot be read",
                )))
            }
            Err(ListOrdersError::Unavailable(err)) => return Err(unavailable(err)),
            Err(ListOrdersError::Internal(err)) => return Err(Unexpected::internal(err)),
        })
    }

    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(up())
    }

    async fn health_live(&self) -> HealthLiveResponse {
        HealthLiveResponse::Ok(up())
    }

    async fn health_ready(&self) -> HealthReadyResponse {
        match tokio::time::timeout(READY_DEADLINE, self.orders.storage().ping()).await {
            Ok(Ok(())) => HealthReadyResponse::Ok(up()),
            Ok(Err(err)) => not_ready(unavailable(err)),
            Err(elapsed) => not_ready(unavailable(elapsed)),
        }
    }
}

/// The 503 of readiness, the only error it documents.
fn not_ready(unexpected: Unexpected) -> HealthReadyResponse {
    let problem = unexpected.into_problem("health_ready", StatusCode::SERVICE_UNAVAILABLE);
    HealthReadyResponse::ServiceUnavailable(problem_body(problem), RETRY_AFTER_SECONDS)
}
