//! The storage port over HTTP: a remote Storage Service (`openapi/storage-service.yaml`) called
//! through its generated progenitor client, with bounded retries of transient failures.

use std::{fmt, future::Future, num::NonZeroU32, sync::Arc, time::Duration};

use futures::{FutureExt, TryFutureExt};
use progenitor_client::{ClientHooks, ClientInfo, OperationInfo};
use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, HeaderValue},
};

use crate::domain::model::{
    AllocationState, BookId, Currency, Cursor, InvalidValue, Money, NewOrder, Order, OrderId,
    OrderQuery, OrderStatus, Page, Quantity, Recorded, StatusChange, Stock, StockAllocation,
    UserId,
};
use crate::domain::storage::{OrderStore, StorageError, StorageResult};
use crate::generated::storage_service::client::{
    Client, Error as ClientError, ResponseValue, types,
};
use crate::http::wire::same_variants;
use crate::metrics;
use crate::watched::WatchedFile;

pub use super::channel::Channel;
use super::channel::Unanswered;
use super::resilience::{self, Breaker, Failure, RetryPolicy};

/// The problem `type` of a take refused for lack of stock; every other 409 is a conflict.
const OUT_OF_STOCK: &str = "/problems/out-of-stock";

/// Longest text kept from an answer in an error, so that a long problem or a proxy's error
/// page cannot flood the log.
const MAX_EXCERPT_CHARS: usize = 300;

/// Timeouts, connection pool, retries and circuit breaker of [`HttpStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStorageConfig {
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// How long an unused connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// Unused connections kept open per host; more are closed after use. Sized for the
    /// requests the service admits at once, so that a busy service does not reconnect.
    pub pool_max_idle_per_host: usize,
    /// Attempts per call, their timeout and the backoff between them.
    pub retry: RetryPolicy,
    /// Failed attempts in a row after which calls are held back (`STORAGE_BREAKER_FAILURES`).
    pub breaker_threshold: u32,
    /// How long calls are held back before one probe goes out (`STORAGE_BREAKER_COOLDOWN`).
    pub breaker_cooldown: Duration,
}

impl Default for HttpStorageConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            // Below the keep-alive timeout of common servers, so the pool seldom hands out a
            // connection that the server is closing at that very moment.
            pool_idle_timeout: Duration::from_secs(30),
            // The server's default bound on requests in flight (`SERVER_MAX_REQUESTS_IN_FLIGHT`).
            pool_max_idle_per_host: 128,
            retry: RetryPolicy {
                attempts: 3,
                // A storage call takes milliseconds; two seconds is a storage in trouble, and
                // leaves room for a second attempt inside a request's deadline.
                attempt_timeout: Duration::from_secs(2),
                // 50 ms, then 200 ms, each spread by jitter: long enough for a restarting
                // instance or a load balancer to move on, short enough to stay far below
                // the caller's own timeout.
                first_backoff: Duration::from_millis(50),
            },
            // Random faults of one call in four almost never fail ten attempts in a row; a
            // storage that is down does within a second under any load.
            breaker_threshold: 10,
            breaker_cooldown: Duration::from_secs(1),
        }
    }
}

/// Why an [`HttpStorage`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpStorageSetupError {
    #[error("invalid Storage Service URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid Storage Service client settings: {0}")]
    InvalidConfig(&'static str),
    #[error("cannot build the HTTP client of the Storage Service")]
    Client(#[from] reqwest::Error),
}

/// The variable naming the file of the bearer token sent to the Storage Service.
pub const TOKEN_VARIABLE: &str = "STORAGE_SERVICE_TOKEN_FILE";

/// The bearer token of [`TOKEN_VARIABLE`], as the `Authorization` header that carries it,
/// marked sensitive so that no debug output of a request shows it.
pub type StorageToken = WatchedFile<HeaderValue>;

/// Reads the token file at `path`: its text without the surrounding white space, which must
/// be non-empty and fit in a header.
pub fn open_token(path: &str) -> Result<StorageToken, crate::config::ConfigError> {
    WatchedFile::open(TOKEN_VARIABLE, path, |content| {
        let token = std::str::from_utf8(content)
            .map_err(|_| "the token is not UTF-8 text".to_owned())?
            .trim();
        if token.is_empty() {
            return Err("the token file is empty".to_owned());
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token holds characters a header cannot carry".to_owned())?;
        header.set_sensitive(true);
        Ok(header)
    })
}

/// The order store, [`OrderStore`], implemented by a remote Storage
/// Service. Clones share one connection pool and one circuit breaker.
#[derive(Debug, Clone)]
pub struct HttpStorage {
    client: Client,
    retry: RetryPolicy,
    breaker: Arc<Breaker>,
}

impl HttpStorage {
    /// A client of the Storage Service at `base_url` (e.g. `http://localhost:8083`). Nothing
    /// is sent yet: [`OrderStore::ping`] tells whether the service answers.
    pub fn new(base_url: &str, config: HttpStorageConfig) -> Result<Self, HttpStorageSetupError> {
        let base_url = checked_base_url(base_url)?;
        if config.retry.attempts == 0 {
            return Err(HttpStorageSetupError::InvalidConfig(
                "attempts must be at least 1",
            ));
        }
        // reqwest only builds the requests; the channel sends them, and each attempt is
        // bounded by `call`, within the request's deadline.
        let requests = reqwest::ClientBuilder::new().build()?;
        Ok(Self {
            client: Client::new_with_client(&base_url, requests, Channel::new(&config)),
            retry: config.retry,
            breaker: Arc::new(Breaker::new(
                config.breaker_threshold,
                config.breaker_cooldown,
            )),
        })
    }

    /// Sends `token` as a bearer token on every request; `None` sends none.
    #[must_use]
    pub fn with_token(self, token: Option<Arc<StorageToken>>) -> Self {
        let client = Client::new_with_client(
            self.client.baseurl(),
            self.client.client().clone(),
            self.client.inner().clone().with_token(token),
        );
        Self { client, ..self }
    }

    /// Sends a request built by `send`, again while it fails transiently and the deadline
    /// allows, and classifies the final failure.
    async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        send: F,
    ) -> StorageResult<ResponseValue<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, ClientError<types::Problem>>>,
    {
        // Boxed: a call holds the generated request's future (about 1.7 KB) and a timer,
        // which every future that awaits it would hold and move again.
        Box::pin(self.attempts(operation, send)).await
    }

    /// [`HttpStorage::call`], unboxed.
    fn attempts<T, F, Fut>(
        &self,
        operation: &'static str,
        mut send: F,
    ) -> impl Future<Output = StorageResult<ResponseValue<T>>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<ResponseValue<T>, ClientError<types::Problem>>>,
    {
        measured(
            operation,
            resilience::call(operation, self.retry, &self.breaker, move || {
                send().map_err(|err| {
                    let retry_after = retry_after(&err);
                    let token_refused = refuses_the_token(&err);
                    let error = classify(err);
                    Failure {
                        // Every attempt with the same token meets the same refusal.
                        retryable: error.is_retryable() && !token_refused,
                        retry_after,
                        error,
                    }
                })
            }),
        )
    }
}

/// Runs one call of the adapter, its retries included, and records its outcome and time:
/// the one place where storage calls are measured. A combinator, not an `async fn`, which
/// would hold `call` twice: as its argument and as the future it awaits.
fn measured<T>(
    operation: &'static str,
    call: impl Future<Output = StorageResult<T>>,
) -> impl Future<Output = StorageResult<T>> {
    let started = tokio::time::Instant::now();
    call.inspect(move |result| {
        let outcome = match result {
            Ok(_) => "ok",
            Err(err) => error_kind(err),
        };
        metrics::storage_call(operation, outcome, started.elapsed());
    })
}

/// The label of a storage error's kind.
fn error_kind(err: &StorageError) -> &'static str {
    match err {
        StorageError::NotFound => "not_found",
        StorageError::UnknownBook => "unknown_book",
        StorageError::OutOfStock { .. } => "out_of_stock",
        StorageError::Conflict(_) => "conflict",
        StorageError::InvalidCursor => "invalid_cursor",
        StorageError::Refused(_) => "refused",
        StorageError::Unavailable(_) => "unavailable",
        StorageError::Failed(_) => "failed",
    }
}

/// Every request the client builds, each retry included, carries the trace and request id of
/// the request being served (see [`crate::trace`]) and the storage token, when one is set, as
/// its file holds it now, and is sent over the client's [`Channel`]. progenitor calls this
/// implementation on `Client` in place of its default one on `&Client`.
impl ClientHooks<Channel> for Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _: &OperationInfo,
    ) -> Result<(), ClientError<E>> {
        crate::trace::inject(request.headers_mut());
        if let Some(token) = &self.inner().token {
            request
                .headers_mut()
                .insert(AUTHORIZATION, HeaderValue::clone(&token.current()));
        }
        Ok(())
    }

    async fn exec(
        &self,
        request: reqwest::Request,
        _: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        self.inner().send(request).await
    }

    /// A request that got no answer fails here, before the generated client reads the
    /// stand-in answer that carries its failure as if the Storage Service had sent it.
    async fn post<E>(
        &self,
        result: &reqwest::Result<reqwest::Response>,
        _: &OperationInfo,
    ) -> Result<(), ClientError<E>> {
        if let Ok(answer) = result
            && let Some(failure) = Unanswered::of(answer)
        {
            let stand_in = failure.clone().stand_in(answer.url().clone());
            return Err(ClientError::UnexpectedResponse(stand_in));
        }
        Ok(())
    }
}

/// The status and headers of the answer that `err` carries, when the storage answered.
fn answer_head(
    err: &ClientError<types::Problem>,
) -> Option<(StatusCode, &reqwest::header::HeaderMap)> {
    match err {
        ClientError::ErrorResponse(answer) => Some((answer.status(), answer.headers())),
        ClientError::UnexpectedResponse(response) if Unanswered::of(response).is_none() => {
            Some((response.status(), response.headers()))
        }
        _ => None,
    }
}

/// The `Retry-After` of an answer, in seconds as the Storage Service sends it.
fn retry_after(err: &ClientError<types::Problem>) -> Option<Duration> {
    let (_, headers) = answer_head(err)?;
    let seconds = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    seconds.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A base URL the generated client can append paths to.
fn checked_base_url(base_url: &str) -> Result<String, HttpStorageSetupError> {
    let invalid = |reason: &str| HttpStorageSetupError::InvalidUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|err| invalid(&err.to_string()))?;
    // This build has no TLS: an https URL would fail on every call with a connect error,
    // which looks transient and would be retried for nothing.
    if url.scheme() != "http" {
        return Err(invalid(
            "the scheme must be http (this build has no TLS support)",
        ));
    }
    if url.host().is_none() {
        return Err(invalid("there is no host"));
    }
    // The client appends `/books`, `/orders` and so on to the text as it is.
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl OrderStore for HttpStorage {
    async fn create_order(&self, order: &NewOrder) -> StorageResult<Recorded> {
        let body = new_order_to(order)?;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let answer = self
            .call("create_order", || {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.client.create_order().body(body.clone()).send()
            })
            .await?;
        // When the answer to an attempt that created the order is lost, the next attempt
        // answers 200. A 200 after a failed attempt cannot tell whose the order is, so it
        // counts as created here: `created: false` is only said when it is certain.
        let created = answer.status() == StatusCode::CREATED || attempts.into_inner() > 1;
        let recorded = order_from(answer.into_inner())?;
        if !recorded.matches(order) {
            return Err(broken_answer(format!(
                "order {} differs from the order that was sent",
                recorded.id
            )));
        }
        Ok(Recorded {
            order: recorded,
            created,
        })
    }

    async fn order(&self, id: OrderId) -> StorageResult<Order> {
        let answer = self
            .call("get_order", || self.client.get_order().id(id.0).send())
            .await?;
        let order = order_from(answer.into_inner())?;
        same_order(id, order.id)?;
        Ok(order)
    }

    async fn orders(&self, query: &OrderQuery) -> StorageResult<Page<Order>> {
        let user_id = query.user_id.as_ref().map(user_id_to).transpose()?;
        let cursor = query.cursor.as_ref().map(cursor_to).transpose()?;
        let limit = NonZeroU32::new(query.limit.get())
            .ok_or_else(|| not_sent("limit", "must be at least 1"))?;
        let status = query.status.map(types::OrderStatus::from);
        let answer = self
            .call("list_orders", || {
                let mut request = self.client.list_orders().limit(limit);
                if let Some(user_id) = &user_id {
                    request = request.user_id(user_id.clone());
                }
                if let Some(created_before) = query.created_before {
                    request = request.created_before(created_before);
                }
                if let Some(cursor) = &cursor {
                    request = request.cursor(cursor.clone());
                }
                if let Some(status) = status {
                    request = request.status(status);
                }
                request.send()
            })
            .await?;
        let page = answer.into_inner();
        let items = page
            .items
            .into_iter()
            .map(order_from)
            .collect::<StorageResult<Vec<_>>>()?;
        // Another user's order in the page would leak it to the caller.
        if let Some(stray) = items.iter().find(|order| {
            query
                .user_id
                .as_ref()
                .is_some_and(|user| *user != order.user_id)
                || query.status.is_some_and(|s| s != order.status)
                || query
                    .created_before
                    .is_some_and(|before| order.created_at >= before)
        }) {
            return Err(broken_answer(format!(
                "order {} in a list it does not match",
                stray.id
            )));
        }
        Ok(Page {
            items,
            next_cursor: page.next_cursor.map(|cursor| Cursor(cursor.into())),
        })
    }

    async fn change_status(&self, id: OrderId, change: &StatusChange) -> StorageResult<Order> {
        let body = status_change_to(change)?;
        let answer = self
            .call("update_order_status", || {
                self.client
                    .update_order_status()
                    .id(id.0)
                    .body(body.clone())
                    .send()
            })
            .await?;
        let order = order_from(answer.into_inner())?;
        same_order(id, order.id)?;
        Ok(order)
    }

    async fn cancel_order(&self, id: OrderId, reason: Option<&str>) -> StorageResult<Order> {
        let body = types::Cancellation {
            reason: reason
                .map(types::CancellationReason::try_from)
                .transpose()
                .map_err(|err| not_sent("reason", err))?,
        };
        let answer = self
            .call("cancel_order", || {
                self.client
                    .cancel_order()
                    .id(id.0)
                    .body(body.clone())
                    .send()
            })
            .await?;
        let order = order_from(answer.into_inner())?;
        same_order(id, order.id)?;
        Ok(order)
    }

    async fn take_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        let answer = match self
            .call("take_stock", || self.client.take_stock().id(id.0).send())
            .await
        {
            Ok(answer) => answer,
            Err(err) => return Err(err),
        };
        let allocation = allocation_from(answer.into_inner())?;
        same_order(id, allocation.order_id)?;
        Ok(allocation)
    }

    async fn return_stock(&self, id: OrderId) -> StorageResult<StockAllocation> {
        let answer = self
            .call("return_stock", || {
                self.client.return_stock().id(id.0).send()
            })
            .await?;
        let allocation = allocation_from(answer.into_inner())?;
        same_order(id, allocation.order_id)?;
        Ok(allocation)
    }

    async fn ping(&self) -> StorageResult<()> {
        // One attempt: a readiness check must report the service as it is now, and whoever
        // probes readiness already probes again. It goes through the breaker, so that
        // readiness fails while calls are held back, and serves as the probe that closes it.
        let one = RetryPolicy {
            attempts: 1,
            ..self.retry
        };
        measured(
            "health",
            resilience::call("health", one, &self.breaker, || {
                let answer = self.client.health().send();
                async move { answer.await.map(|_| ()).map_err(|err| classify(err).into()) }
            }),
        )
        .await
    }
}

/// The catalogue of a remote Storage Service, over the same client and through the same
/// retries: the Order Processor never calls it, but a remote store stands in for an embedded
/// one wherever books are read or set through the port.
/// What the Storage Service answered, or why it did not, when the port has no variant that
/// holds it: the source of `Unavailable` and `Failed`, so that the log shows it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Answer(String);

/// The one place where a failed call becomes a [`StorageError`].
///
/// A documented error status comes with a Problem and is mapped by its meaning. An
/// undocumented status says nothing reliable about the operation (a proxy's 404 is not a
/// missing order), so it only tells whether trying again can help. An out-of-stock refusal
/// comes back with `available: 0`, since the Problem carries no count; `take_stock` fills it.
fn classify(err: ClientError<types::Problem>) -> StorageError {
    match err {
        ClientError::ErrorResponse(answer) => {
            let status = answer.status();
            classify_problem(status, &answer.into_inner())
        }
        ClientError::UnexpectedResponse(response) => {
            // No answer at all: a refused, reset or closed connection.
            if let Some(failure) = Unanswered::of(&response) {
                return StorageError::Unavailable(failure.clone().into());
            }
            let status = response.status();
            if is_refusal_of_the_token(status) {
                return token_refused(status);
            }
            let cause = Answer(format!("undocumented status {status}"));
            if is_transient(status) {
                StorageError::Unavailable(cause.into())
            } else {
                StorageError::Failed(cause.into())
            }
        }
        // The request could not be built or went round in redirects: a wrong base URL or a
        // bug, which no retry mends.
        ClientError::CommunicationError(err) if err.is_builder() || err.is_redirect() => {
            StorageError::Failed(err.into())
        }
        // An answer cut short while its body was read.
        ClientError::CommunicationError(err) | ClientError::ResponseBodyError(err) => {
            StorageError::Unavailable(err.into())
        }
        // progenitor keeps no status here. An answer that is not the contract's JSON is most
        // often an intermediary's error page (a proxy's 502 or 503), so it is retried and,
        // if it persists, reported as the storage being unavailable; the log keeps the body.
        ClientError::InvalidResponsePayload(body, err) => StorageError::Unavailable(
            Answer(format!(
                "the answer breaks the contract: {err}; body: {}",
                excerpt(&String::from_utf8_lossy(&body))
            ))
            .into(),
        ),
        ClientError::InvalidRequest(message) => {
            StorageError::Failed(Answer(format!("the request was not built: {message}")).into())
        }
        ClientError::InvalidUpgrade(err) => StorageError::Failed(err.into()),
        ClientError::Custom(message) => StorageError::Failed(Answer(message).into()),
    }
}

fn classify_problem(status: StatusCode, problem: &types::Problem) -> StorageError {
    if is_refusal_of_the_token(status) {
        return token_refused(status);
    }
    let error = match status {
        StatusCode::NOT_FOUND => StorageError::NotFound,
        StatusCode::CONFLICT if problem.type_.ends_with(OUT_OF_STOCK) => StorageError::OutOfStock {
            available: problem.available,
        },
        StatusCode::CONFLICT => return StorageError::Conflict(problem_text(problem)),
        StatusCode::UNPROCESSABLE_ENTITY => StorageError::UnknownBook,
        // Only `list_orders` takes a cursor, and the service names the parameter it refuses.
        StatusCode::BAD_REQUEST if problem.errors.iter().any(|error| error.field == "cursor") => {
            StorageError::InvalidCursor
        }
        StatusCode::BAD_REQUEST => return StorageError::Refused(problem_text(problem)),
        status => {
            let cause = Answer(format!("{status}: {}", problem_text(problem)));
            return if is_transient(status) {
                StorageError::Unavailable(cause.into())
            } else {
                StorageError::Failed(cause.into())
            };
        }
    };
    // These variants have no room for the problem's text; the log keeps it.
    tracing::debug!(%status, problem = %problem_text(problem), "storage refused the request");
    error
}

/// Whether the answer refuses this service's token, documented or not.
fn refuses_the_token(err: &ClientError<types::Problem>) -> bool {
    answer_head(err).is_some_and(|(status, _)| is_refusal_of_the_token(status))
}

fn is_refusal_of_the_token(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

/// The Storage Service refused this service's token, or wants one and was sent none: no
/// call can succeed until `STORAGE_SERVICE_TOKEN_FILE` holds a token it accepts. The caller is
/// told the storage is unavailable, as it is to this service; the log says why, for the
/// operator, without the token.
fn token_refused(status: StatusCode) -> StorageError {
    tracing::error!(%status, variable = TOKEN_VARIABLE, "the Storage Service refused the storage token");
    StorageError::Unavailable(
        Answer(format!(
            "the Storage Service refused the storage token of {TOKEN_VARIABLE} ({status})"
        ))
        .into(),
    )
}

/// Statuses after which the same request may succeed.
fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// A problem on one line, `title (type): detail [field: message; ...]`, for logs.
fn problem_text(problem: &types::Problem) -> String {
    let mut text = format!("{} ({})", problem.title, problem.type_);
    if let Some(detail) = &problem.detail {
        text.push_str(": ");
        text.push_str(detail);
    }
    if !problem.errors.is_empty() {
        let fields = problem
            .errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect::<Vec<_>>();
        text.push_str(" [");
        text.push_str(&fields.join("; "));
        text.push(']');
    }
    excerpt(&text)
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An answer that breaks the contract or a domain rule: the service is wrong, not the caller.
fn broken_answer(what: impl fmt::Display) -> StorageError {
    StorageError::Failed(Answer(format!("the storage answered {what}")).into())
}

/// A domain value the contract does not accept; the storage would refuse it, so it is not sent.
fn not_sent(field: &str, why: impl fmt::Display) -> StorageError {
    StorageError::Refused(format!("{field} {why}; not sent"))
}

fn same_order(asked: OrderId, answered: OrderId) -> StorageResult<()> {
    if asked == answered {
        Ok(())
    } else {
        Err(broken_answer(format!("order {answered} for order {asked}")))
    }
}

same_variants!(OrderStatus <=> types::OrderStatus: Pending, Confirmed, Rejected, Failed, Cancelled);
same_variants!(AllocationState <= types::AllocationState: Held, Returned, Refused);

fn book_id_to(id: &BookId) -> StorageResult<types::BookId> {
    types::BookId::try_from(id.as_str()).map_err(|err| not_sent("bookId", err))
}

fn user_id_to(id: &UserId) -> StorageResult<types::UserId> {
    types::UserId::try_from(id.as_str()).map_err(|err| not_sent("userId", err))
}

/// A cursor the contract refuses cannot be one the storage issued.
fn cursor_to(cursor: &Cursor) -> StorageResult<types::Cursor> {
    types::Cursor::try_from(cursor.0.as_str()).map_err(|_| StorageError::InvalidCursor)
}

fn quantity_to(quantity: Quantity) -> StorageResult<types::Quantity> {
    NonZeroU32::new(quantity.get())
        .map(types::Quantity)
        .ok_or_else(|| not_sent("quantity", "must be at least 1"))
}

fn new_order_to(order: &NewOrder) -> StorageResult<types::NewOrder> {
    Ok(types::NewOrder {
        order_id: order.id.0,
        book_id: book_id_to(&order.book_id)?,
        user_id: user_id_to(&order.user_id)?,
        quantity: quantity_to(order.quantity)?,
        status: types::NewOrderStatus::Pending,
    })
}

fn status_change_to(change: &StatusChange) -> StorageResult<types::StatusChange> {
    let reason = change
        .reason
        .as_deref()
        .map(types::StatusChangeReason::try_from)
        .transpose()
        .map_err(|err| not_sent("reason", err))?;
    Ok(types::StatusChange {
        from: change.from.into(),
        to: change.to.into(),
        reason,
    })
}

fn invalid(err: InvalidValue) -> StorageError {
    broken_answer(format!("an invalid value: {err}"))
}

fn quantity_from(quantity: types::Quantity) -> StorageResult<Quantity> {
    Quantity::new(i64::from(quantity.0.get())).map_err(invalid)
}

fn order_from(order: types::Order) -> StorageResult<Order> {
    let quantity = quantity_from(order.quantity)?;
    let unit_price = Money::price(order.unit_price.0).map_err(invalid)?;
    let total_price = Money::new(order.total_price.0).map_err(invalid)?;
    if unit_price.times(quantity) != total_price {
        return Err(broken_answer(format!(
            "order {} with a total of {} for {} copies at {}",
            order.id,
            total_price.minor_units(),
            quantity.get(),
            unit_price.minor_units()
        )));
    }
    Ok(Order {
        id: OrderId(order.id),
        book_id: BookId::parse(&order.book_id).map_err(invalid)?,
        user_id: UserId::parse(&order.user_id).map_err(invalid)?,
        quantity,
        status: order.status.into(),
        reason: order.reason.map(String::from),
        stock_held: order.stock_held,
        unit_price,
        total_price,
        currency: Currency::parse(&order.currency).map_err(invalid)?,
        created_at: order.created_at.into(),
        updated_at: order.updated_at.into(),
    })
}

fn allocation_from(allocation: types::StockAllocation) -> StorageResult<StockAllocation> {
    Ok(StockAllocation {
        order_id: OrderId(allocation.order_id),
        book_id: BookId::parse(&allocation.book_id).map_err(invalid)?,
        quantity: quantity_from(allocation.quantity)?,
        state: allocation.state.into(),
        book_stock: Stock::new(allocation.book_stock.0).map_err(invalid)?,
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;

    fn problem(status: u16, type_: &str, fields: &[&str]) -> types::Problem {
        types::Problem {
            available: None,
            detail: Some("what happened".to_owned()),
            errors: fields
                .iter()
                .map(|field| types::FieldError {
                    field: (*field).to_owned(),
                    message: "is wrong".to_owned(),
                })
                .collect(),
            instance: None,
            status: i32::from(status),
            title: "A title".to_owned(),
            type_: type_.to_owned(),
        }
    }

    fn documented(status: u16, type_: &str, fields: &[&str]) -> ClientError<types::Problem> {
        ClientError::ErrorResponse(ResponseValue::new(
            problem(status, type_, fields),
            StatusCode::from_u16(status).unwrap(),
            HeaderMap::new(),
        ))
    }

    fn undocumented(status: u16) -> ClientError<types::Problem> {
        let response = poem::http::Response::builder()
            .status(status)
            .body("<html>Bad gateway</html>")
            .unwrap();
        ClientError::UnexpectedResponse(reqwest::Response::from(response))
    }

    #[test]
    fn the_retry_after_of_an_answer_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        let busy = ClientError::ErrorResponse(ResponseValue::new(
            problem(503, "/problems/overloaded", &[]),
            StatusCode::SERVICE_UNAVAILABLE,
            headers,
        ));
        assert_eq!(retry_after(&busy), Some(Duration::from_secs(3)));
        let response = poem::http::Response::builder()
            .status(503)
            .header("retry-after", "2")
            .body("busy")
            .unwrap();
        let proxy = ClientError::UnexpectedResponse(reqwest::Response::from(response));
        assert_eq!(retry_after(&proxy), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&undocumented(503)), None);
        assert_eq!(
            retry_after(&documented(409, "/problems/conflict", &[])),
            None
        );
    }

    fn chain(err: &StorageError) -> String {
        crate::telemetry::ErrorChain(err).to_string()
    }

    #[test]
    fn documented_refusals_map_to_their_kind() {
        assert!(matches!(
            classify(documented(404, "/problems/not-found", &[])),
            StorageError::NotFound
        ));
        assert!(matches!(
            classify(documented(409, "/problems/out-of-stock", &[])),
            StorageError::OutOfStock { available: None }
        ));
        let mut counted = problem(409, "/problems/out-of-stock", &[]);
        counted.available = Some(1);
        assert!(matches!(
            classify(ClientError::ErrorResponse(ResponseValue::new(
                counted,
                StatusCode::CONFLICT,
                HeaderMap::new()
            ))),
            StorageError::OutOfStock { available: Some(1) }
        ));
        assert!(matches!(
            classify(documented(422, "/problems/unknown-book", &[])),
            StorageError::UnknownBook
        ));
        assert!(matches!(
            classify(documented(400, "/problems/invalid-request", &["cursor"])),
            StorageError::InvalidCursor
        ));
    }

    #[test]
    fn conflicts_and_refusals_keep_the_problem_text() {
        let StorageError::Conflict(text) = classify(documented(409, "/problems/conflict", &[]))
        else {
            panic!("a 409 that is not out-of-stock is a conflict");
        };
        assert_eq!(text, "A title (/problems/conflict): what happened");

        let StorageError::Refused(text) =
            classify(documented(400, "/problems/invalid-request", &["/quantity"]))
        else {
            panic!("a 400 that does not name the cursor is a refusal");
        };
        assert_eq!(
            text,
            "A title (/problems/invalid-request): what happened [/quantity: is wrong]"
        );
    }

    #[test]
    fn server_errors_and_overload_are_retryable() {
        for err in [
            documented(500, "/problems/internal", &[]),
            documented(503, "/problems/unavailable", &[]),
            undocumented(408),
            undocumented(429),
            undocumented(502),
            undocumented(504),
        ] {
            let classified = classify(err);
            assert!(classified.is_retryable(), "{}", chain(&classified));
        }
        let err = classify(documented(503, "/problems/unavailable", &[]));
        assert!(chain(&err).contains("503 Service Unavailable: A title"));
    }

    #[test]
    fn undocumented_statuses_are_failures_whatever_they_say() {
        for status in [200, 204, 404, 409, 413] {
            let err = classify(undocumented(status));
            assert!(
                matches!(err, StorageError::Failed(_)),
                "{status}: {}",
                chain(&err)
            );
        }
    }

    #[test]
    fn a_refused_token_makes_the_storage_unavailable_documented_or_not() {
        for err in [
            documented(401, "/problems/unauthorized", &[]),
            documented(403, "/problems/forbidden", &[]),
            undocumented(401),
            undocumented(403),
        ] {
            let classified = classify(err);
            assert!(
                matches!(classified, StorageError::Unavailable(_)),
                "{}",
                chain(&classified)
            );
            assert!(
                chain(&classified)
                    .contains("refused the storage token of STORAGE_SERVICE_TOKEN_FILE"),
                "{}",
                chain(&classified)
            );
        }
    }

    #[test]
    fn a_token_file_is_read_as_a_sensitive_bearer_header_and_refused_when_unusable() {
        let path = std::env::temp_dir().join(format!("storage-token-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, " s3cret\n").unwrap();
        let token = open_token(path.to_str().unwrap()).unwrap();
        assert_eq!(*token.current(), "Bearer s3cret");
        assert!(token.current().is_sensitive());
        for (content, reason) in [
            ("\n", "the token file is empty"),
            (
                "s3c\u{7}ret",
                "the token holds characters a header cannot carry",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            let err = open_token(path.to_str().unwrap()).unwrap_err();
            assert_eq!(err.variable, TOKEN_VARIABLE);
            assert_eq!(err.reason, reason);
            assert!(!err.to_string().contains("s3c"), "{err}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_payload_that_is_not_the_contracts_json_is_retryable() {
        let body = b"<html>oops</html>".as_slice();
        let parse_error = serde_json::from_slice::<types::Problem>(body).unwrap_err();
        let err = classify(ClientError::InvalidResponsePayload(
            body.into(),
            parse_error,
        ));
        assert!(matches!(err, StorageError::Unavailable(_)));
        assert!(chain(&err).contains("<html>oops</html>"));
    }

    #[test]
    fn a_call_holds_the_future_of_its_request_once() {
        let storage = HttpStorage::new("http://127.0.0.1:1", HttpStorageConfig::default())
            .expect("a valid base URL");
        let id = uuid::Uuid::nil();
        let request = std::mem::size_of_val(&storage.client.get_order().id(id).send());
        let call = std::mem::size_of_val(
            &storage.attempts("get_order", || storage.client.get_order().id(id).send()),
        );
        // The retries, the deadline's timer and the metrics add a few hundred bytes; each
        // `async` block that awaited what it captured doubled the whole (14 KB for 1.7 KB).
        assert!(
            call < request * 3 / 2,
            "a call of {call} bytes for a request of {request}"
        );
    }

    #[test]
    fn a_request_that_cannot_be_built_is_a_failure() {
        let err = reqwest::Client::new()
            .get("http://[not-a-host/")
            .build()
            .unwrap_err();
        assert!(matches!(
            classify(ClientError::CommunicationError(err)),
            StorageError::Failed(_)
        ));
        assert!(matches!(
            classify(ClientError::InvalidRequest("bad".to_owned())),
            StorageError::Failed(_)
        ));
    }

    #[test]
    fn long_problem_texts_are_cut() {
        let mut long = problem(409, "/problems/conflict", &[]);
        long.detail = Some("é".repeat(1000));
        let text = problem_text(&long);
        assert_eq!(text.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(text.ends_with('…'));
    }

    fn order_json() -> serde_json::Value {
        json!({
            "id": "0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f",
            "bookId": "book-1",
            "userId": "user-17",
            "quantity": 2,
            "status": "rejected",
            "reason": "not enough stock",
            "stockHeld": false,
            "unitPrice": 3999,
            "totalPrice": 7998,
            "currency": "EUR",
            "createdAt": "2026-11-24T10:15:30Z",
            "updatedAt": "2026-11-24T10:15:31Z"
        })
    }

    fn wire<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_order_answer_becomes_a_domain_order() {
        let order = order_from(wire(order_json())).unwrap();
        assert_eq!(order.id.to_string(), "0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f");
        assert_eq!(order.book_id.as_str(), "book-1");
        assert_eq!(order.user_id.as_str(), "user-17");
        assert_eq!(order.quantity.get(), 2);
        assert_eq!(order.status, OrderStatus::Rejected);
        assert_eq!(order.reason.as_deref(), Some("not enough stock"));
        assert!(!order.stock_held);
        assert_eq!(order.unit_price.minor_units(), 3999);
        assert_eq!(order.total_price.minor_units(), 7998);
        assert_eq!(order.currency.as_str(), "EUR");
        assert_eq!(order.created_at.to_rfc3339(), "2026-11-24T10:15:30+00:00");
        assert_eq!(order.updated_at.to_rfc3339(), "2026-11-24T10:15:31+00:00");
    }

    #[test]
    fn an_order_answer_that_breaks_a_domain_rule_is_a_failure() {
        let mut wrong_total = order_json();
        wrong_total["totalPrice"] = json!(7000);
        let mut huge_price = order_json();
        huge_price["unitPrice"] = json!(Money::MAX_PRICE + 1);
        let mut negative_total = order_json();
        negative_total["totalPrice"] = json!(-1);
        for answer in [wrong_total, huge_price, negative_total] {
            assert!(matches!(
                order_from(wire(answer)),
                Err(StorageError::Failed(_))
            ));
        }
    }

    #[test]
    fn order_statuses_map_both_ways() {
        for status in [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::Rejected,
            OrderStatus::Failed,
            OrderStatus::Cancelled,
        ] {
            let sent = types::OrderStatus::from(status);
            assert_eq!(sent.to_string(), status.as_str());
            assert_eq!(OrderStatus::from(sent), status);
        }
    }

    #[test]
    fn an_allocation_answer_becomes_a_domain_allocation() {
        let allocation = allocation_from(wire(json!({
            "orderId": "0193a4c2-7b1e-7c3d-9f00-5a1b2c3d4e5f",
            "bookId": "book-1",
            "quantity": 2,
            "state": "returned",
            "bookStock": 8
        })))
        .unwrap();
        assert_eq!(allocation.book_id.as_str(), "book-1");
        assert_eq!(allocation.quantity.get(), 2);
        assert_eq!(allocation.state, AllocationState::Returned);
        assert_eq!(allocation.book_stock.get(), 8);
    }

    #[test]
    fn requests_have_the_shape_of_the_contract() {
        let order = NewOrder {
            id: OrderId(uuid::Uuid::nil()),
            book_id: BookId::parse("book-1").unwrap(),
            user_id: UserId::parse("user-17").unwrap(),
            quantity: Quantity::new(2).unwrap(),
        };
        assert_eq!(
            serde_json::to_value(new_order_to(&order).unwrap()).unwrap(),
            json!({
                "orderId": "00000000-0000-0000-0000-000000000000",
                "bookId": "book-1",
                "userId": "user-17",
                "quantity": 2,
                "status": "pending"
            })
        );

        let change = StatusChange {
            from: OrderStatus::Pending,
            to: OrderStatus::Rejected,
            reason: Some("no stock".to_owned()),
        };
        assert_eq!(
            serde_json::to_value(status_change_to(&change).unwrap()).unwrap(),
            json!({"from": "pending", "to": "rejected", "reason": "no stock"})
        );
    }

    #[test]
    fn values_the_contract_refuses_are_not_sent() {
        let change = StatusChange {
            from: OrderStatus::Pending,
            to: OrderStatus::Failed,
            reason: Some("x".repeat(501)),
        };
        assert!(matches!(
            status_change_to(&change),
            Err(StorageError::Refused(_))
        ));

        assert!(matches!(
            cursor_to(&Cursor("not a cursor!".to_owned())),
            Err(StorageError::InvalidCursor)
        ));
        assert!(cursor_to(&Cursor("abc_DEF-123".to_owned())).is_ok());
    }

    #[test]
    fn the_base_url_is_checked_and_trimmed() {
        let storage =
            HttpStorage::new("http://localhost:8083/", HttpStorageConfig::default()).unwrap();
        assert_eq!(storage.client.baseurl(), "http://localhost:8083");
        let storage =
            HttpStorage::new("http://storage/api/", HttpStorageConfig::default()).unwrap();
        assert_eq!(storage.client.baseurl(), "http://storage/api");

        for url in [
            "",
            "localhost:8083",
            "ftp://storage",
            "https://storage",
            "http://storage/?a=b",
        ] {
            assert!(
                matches!(
                    HttpStorage::new(url, HttpStorageConfig::default()),
                    Err(HttpStorageSetupError::InvalidUrl { .. })
                ),
                "{url}"
            );
        }
        let defaults = HttpStorageConfig::default();
        let no_attempts = HttpStorageConfig {
            retry: RetryPolicy {
                attempts: 0,
                ..defaults.retry
            },
            ..defaults
        };
        assert!(matches!(
            HttpStorage::new("http://storage", no_attempts),
            Err(HttpStorageSetupError::InvalidConfig(_))
        ));
    }

    /// A client of a Storage Service at `port` of loopback, with `attempts` attempts a call.
    fn storage_at(port: u16, attempts: u32) -> HttpStorage {
        let defaults = HttpStorageConfig::default();
        let config = HttpStorageConfig {
            retry: RetryPolicy {
                attempts,
                ..defaults.retry
            },
            ..defaults
        };
        HttpStorage::new(&format!("http://127.0.0.1:{port}"), config).expect("a valid base URL")
    }

    /// A Storage Service that reads each request's head and writes `answer`, then closes the
    /// connection; it keeps the heads it read, one a request.
    async fn answering_with(answer: &'static [u8]) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buffer = [0; 1024];
                while !head.windows(4).any(|end| end == b"\r\n\r\n") {
                    match connection.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = connection.write_all(answer).await;
            }
        });
        (port, heads)
    }

    #[tokio::test]
    async fn a_request_names_the_host_and_port_of_the_base_url_and_never_its_credentials() {
        const EMPTY: &[u8] = b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n";
        let (port, heads) = answering_with(EMPTY).await;
        let _ = storage_at(port, 1).order(OrderId(uuid::Uuid::nil())).await;
        let config = HttpStorageConfig::default();
        let with_credentials =
            HttpStorage::new(&format!("http://user:secret@127.0.0.1:{port}"), config).unwrap();
        let _ = with_credentials.order(OrderId(uuid::Uuid::nil())).await;
        let heads = heads.lock().unwrap();
        assert_eq!(heads.len(), 2);
        for head in heads.iter() {
            let hosts: Vec<&str> = head
                .lines()
                .filter(|line| line.to_ascii_lowercase().starts_with("host:"))
                .collect();
            assert_eq!(hosts, [format!("host: 127.0.0.1:{port}")], "{head}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_says_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Nothing listens on the port any more.
        let err = storage_at(port, 1)
            .order(OrderId(uuid::Uuid::nil()))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        let text = chain(&err);
        assert!(
            text.contains("no answer from the Storage Service"),
            "{text}"
        );
        assert!(text.to_lowercase().contains("connection refused"), "{text}");
    }

    #[tokio::test]
    async fn a_connection_closed_unanswered_is_unavailable_and_tried_again() {
        let (port, heads) = answering_with(b"").await;
        let err = storage_at(port, 2)
            .order(OrderId(uuid::Uuid::nil()))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        assert!(chain(&err).contains("no answer from the Storage Service"));
        assert_eq!(heads.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_unavailable() {
        let (port, _) = answering_with(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"id\":",
        )
        .await;
        let err = storage_at(port, 1)
            .order(OrderId(uuid::Uuid::nil()))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        assert!(!chain(&err).contains("no answer"), "{}", chain(&err));
    }

    #[tokio::test]
    async fn an_undocumented_answer_is_read_as_the_storage_sent_it() {
        let (port, _) =
            answering_with(b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n").await;
        let err = storage_at(port, 1)
            .order(OrderId(uuid::Uuid::nil()))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Failed(_)), "{err:?}");
        assert!(
            chain(&err).contains("undocumented status 418"),
            "{}",
            chain(&err)
        );
    }
}
