//! The Order Processor's HTTP handlers: they implement the interface generated from
//! `openapi/order-processor.yaml`, turn wire types into domain values, call the order flow,
//! and map each domain outcome to one documented status.

use std::{sync::Arc, time::Duration};

use poem_openapi::payload::Json;

use crate::{
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
        HealthResponse, HealthStatus, ListUserOrdersResponse, Order as ApiOrder, OrderPage,
        OrderStatus as ApiOrderStatus, Problem as ApiProblem,
    },
    telemetry::ErrorChain,
};

use super::{
    RETRY_AFTER_SECONDS,
    problem::{self, Problem},
    wire::{self, order_to_wire, same_variants},
};

/// How long readiness waits for the storage.
const READY_DEADLINE: Duration = Duration::from_secs(2);

pub struct OrdersApi<S> {
    orders: Arc<OrderService<S>>,
}

impl<S> OrdersApi<S> {
    pub fn new(orders: Arc<OrderService<S>>) -> Self {
        Self { orders }
    }
}

fn problem_body(problem: Problem) -> Json<ApiProblem> {
    Json(problem.into())
}

/// Logs an infrastructure error with its chain; the caller only learns its kind.
fn log_unavailable(err: &dyn std::error::Error) -> Json<ApiProblem> {
    tracing::warn!(error = %ErrorChain(err), "storage unavailable");
    problem_body(Problem::new(
        problem::STORAGE_UNAVAILABLE,
        "the storage did not answer; retry later",
    ))
}

fn log_internal(err: &dyn std::error::Error) -> Json<ApiProblem> {
    tracing::error!(error = %ErrorChain(err), "unexpected storage error");
    problem_body(Problem::new(
        problem::INTERNAL,
        "an unexpected error occurred",
    ))
}

same_variants!(OrderStatus => ApiOrderStatus: Pending, Confirmed, Rejected, Failed, Cancelled);
order_to_wire!(ApiOrder, OrderPage);

fn up() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Up,
    })
}

impl<S: OrderStore> Handlers for OrdersApi<S> {
    async fn create_order(
        &self,
        idempotency_key: Option<String>,
        body: CreateOrderRequest,
    ) -> CreateOrderResponse {
        let request = match wire::order_request(&body.book_id, &body.user_id, body.quantity) {
            Ok(request) => request,
            Err(problem) => return CreateOrderResponse::BadRequest(problem_body(problem)),
        };
        let key = match idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
        {
            Ok(key) => key,
            Err(err) => {
                return CreateOrderResponse::BadRequest(problem_body(Problem::invalid_field(
                    "Idempotency-Key",
                    err.0,
                )));
            }
        };
        let placed = match self.orders.place(request, key.as_ref()).await {
            Ok(placed) => placed,
            Err(PlaceOrderError::UnknownBook) => {
                return CreateOrderResponse::UnprocessableEntity(problem_body(Problem::new(
                    problem::UNKNOWN_BOOK,
                    "no book in the catalogue has this bookId",
                )));
            }
            Err(PlaceOrderError::IdempotencyKeyReused) => {
                return CreateOrderResponse::UnprocessableEntity(problem_body(Problem::new(
                    problem::IDEMPOTENCY_KEY_REUSED,
                    "this Idempotency-Key was already used with another body; use a new key for a new order",
                )));
            }
            Err(PlaceOrderError::Unavailable { order_id, source }) => {
                let mut body = log_unavailable(&source);
                body.0.order_id = order_id.map(|id| id.0);
                return CreateOrderResponse::ServiceUnavailable(body, RETRY_AFTER_SECONDS);
            }
            Err(PlaceOrderError::Internal(err)) => {
                return CreateOrderResponse::InternalServerError(log_internal(&err));
            }
        };
        // Absent rather than `false` on a first answer, as clients of other APIs that send
        // this header expect.
        let replayed = placed.replayed.then_some(true);
        let order = placed.order;
        let reason = order.reason.clone();
        match order.status {
            // A keyed retry of a purchase that was confirmed and cancelled since: its outcome
            // was the sale, and the order says where it stands now.
            OrderStatus::Confirmed | OrderStatus::Cancelled => {
                let location = format!("/orders/{}", order.id);
                CreateOrderResponse::Created(Json(order.into()), location, replayed)
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
            OrderStatus::Failed => CreateOrderResponse::InternalServerError(problem_body(
                Problem::new(
                    problem::INTERNAL,
                    format!(
                        "the order failed: {}",
                        reason.as_deref().unwrap_or("processing failed")
                    ),
                )
                .with_order_id(order.id.0),
            )),
            OrderStatus::Pending => {
                tracing::error!(order_id = %order.id, "an order came back from the flow still pending");
                CreateOrderResponse::InternalServerError(problem_body(Problem::new(
                    problem::INTERNAL,
                    "an unexpected error occurred",
                )))
            }
        }
    }

    async fn cancel_order(&self, id: uuid::Uuid, body: CancelOrderRequest) -> CancelOrderResponse {
        match self
            .orders
            .cancel(OrderId(id), body.reason.as_deref())
            .await
        {
            Ok(order) => CancelOrderResponse::Ok(Json(order.into())),
            Err(CancelOrderError::NotFound) => CancelOrderResponse::NotFound(problem_body(
                Problem::new(problem::NOT_FOUND, "no order has this id"),
            )),
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
            Err(CancelOrderError::Unavailable(err)) => {
                CancelOrderResponse::ServiceUnavailable(log_unavailable(&err), RETRY_AFTER_SECONDS)
            }
            Err(CancelOrderError::Internal(err)) => {
                CancelOrderResponse::InternalServerError(log_internal(&err))
            }
        }
    }

    async fn get_order(&self, id: uuid::Uuid) -> GetOrderResponse {
        match self.orders.order(OrderId(id)).await {
            Ok(order) => GetOrderResponse::Ok(Json(order.into())),
            Err(ReadOrderError::NotFound) => GetOrderResponse::NotFound(problem_body(
                Problem::new(problem::NOT_FOUND, "no order has this id"),
            )),
            Err(ReadOrderError::Unavailable(err)) => {
                GetOrderResponse::ServiceUnavailable(log_unavailable(&err), RETRY_AFTER_SECONDS)
            }
            Err(ReadOrderError::Internal(err)) => {
                GetOrderResponse::InternalServerError(log_internal(&err))
            }
        }
    }

    async fn list_user_orders(
        &self,
        user_id: String,
        limit: i32,
        cursor: Option<String>,
    ) -> ListUserOrdersResponse {
        let query = match wire::order_query(Some(&user_id), limit, cursor) {
            Ok(query) => query,
            Err(problem) => return ListUserOrdersResponse::BadRequest(problem_body(problem)),
        };
        match self.orders.orders(&query).await {
            Ok(page) => ListUserOrdersResponse::Ok(Json(page.into())),
            Err(ListOrdersError::InvalidCursor) => {
                ListUserOrdersResponse::BadRequest(problem_body(Problem::invalid_field(
                    "cursor",
                    "the cursor cannot be read",
                )))
            }
            Err(ListOrdersError::Unavailable(err)) => ListUserOrdersResponse::ServiceUnavailable(
                log_unavailable(&err),
                RETRY_AFTER_SECONDS,
            ),
            Err(ListOrdersError::Internal(err)) => {
                ListUserOrdersResponse::InternalServerError(log_internal(&err))
            }
        }
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
            Ok(Err(err)) => {
                HealthReadyResponse::ServiceUnavailable(log_unavailable(&err), RETRY_AFTER_SECONDS)
            }
            Err(elapsed) => HealthReadyResponse::ServiceUnavailable(
                log_unavailable(&elapsed),
                RETRY_AFTER_SECONDS,
            ),
        }
    }
}
