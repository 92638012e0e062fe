//! The Order Processor as the Books Service uses it: plain values in, checked against the
//! contract before anything is sent; one error type whose variants are the documented
//! refusals; a purchase retried with its key until it has an outcome or the caller's
//! deadline passes; a user's orders as a stream that follows `nextCursor`.

use std::{fmt, time::Duration};

use futures::{StreamExt, TryStreamExt, stream, stream::BoxStream};
use reqwest::header::{HeaderName, HeaderValue};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{Client, ClientInfo, Error, hooks::Hooks, problem, retry_after, types};

/// The most copies one order may ask for, as the contract's `Quantity` says.
pub const MAX_QUANTITY: u32 = 1000;
/// The largest page of `user_orders`, as the contract's `limit` says.
pub const MAX_PAGE: u32 = 100;

/// The problem types of the contract, by meaning.
const OUT_OF_STOCK: &str = "/problems/out-of-stock";
const UNKNOWN_BOOK: &str = "/problems/unknown-book";
const KEY_REUSED: &str = "/problems/idempotency-key-reused";
const NOT_CANCELLABLE: &str = "/problems/not-cancellable";
const RATE_LIMITED: &str = "/problems/rate-limited";

/// The wait before another attempt when a transient refusal names none.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Why an operation did not answer what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum OrderError {
    /// A value breaks the contract: refused before anything was sent, or by the service
    /// (`400`). `field` names it as the contract does (`/quantity`, `userId`, ...).
    Invalid { field: String, message: String },
    /// `409`: not enough stock. The refused order is recorded as `rejected`.
    OutOfStock {
        order_id: Option<Uuid>,
        detail: String,
    },
    /// `422`: no book has this id.
    UnknownBook { detail: String },
    /// `422`: the idempotency key was used for another purchase; use a new key.
    KeyReused { detail: String },
    /// `401`: the service checks access, and the request had no valid bearer token (none,
    /// or one that is malformed, expired, wrongly signed or for another audience).
    Unauthorized { detail: String },
    /// `403`: the token lacks a scope the operation needs (`orders:write` to place and
    /// cancel, `orders:read` to read), or `orders:any-user` to act for another user than its
    /// `sub`.
    Forbidden { detail: String },
    /// `404`: no order has this id (or the order is another user's, and the token may not
    /// act for other users).
    NotFound,
    /// `409` to a cancel: the order is not confirmed (rejected, failed, or still pending).
    NotCancellable { detail: String },
    /// `429`: the user of the purchase has placed as many orders in the last minute as the
    /// service allows one user. Nothing was recorded: the same purchase with its key can be
    /// placed after `retry_after`.
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// `503`: the service cannot reach its storage. `order_id` names the order the request
    /// may have recorded; retrying with the same key resumes it.
    Unavailable {
        retry_after: Option<Duration>,
        order_id: Option<Uuid>,
    },
    /// `500`: the service failed; `order_id` names the order when it ended `failed`.
    Failed {
        order_id: Option<Uuid>,
        detail: String,
    },
    /// No answer arrived: the connection was refused or cut, or the request timed out.
    NoAnswer(reqwest::Error),
    /// An answer the contract does not document.
    Unexpected { status: Option<u16>, detail: String },
}

impl OrderError {
    /// Whether the same request, sent again later, may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::NoAnswer(_)
        )
    }

    /// How long the service asked to wait before another attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    fn from_client(err: Error<types::Problem>) -> Self {
        let status = err.status().map(|status| status.as_u16());
        let Some(problem) = problem(&err) else {
            return match err {
                Error::CommunicationError(source) | Error::ResponseBodyError(source)
                    if !source.is_builder() =>
                {
                    Self::NoAnswer(source)
                }
                // The generated types refuse a value the contract forbids before sending.
                Error::InvalidRequest(message) => Self::Invalid {
                    field: "request".to_owned(),
                    message,
                },
                other => Self::Unexpected {
                    status,
                    detail: other.to_string(),
                },
            };
        };
        let detail = problem
            .detail
            .clone()
            .unwrap_or_else(|| problem.title.clone());
        match (status, problem.type_.as_str()) {
            (Some(400), _) => {
                let first = problem.errors.first();
                Self::Invalid {
                    field: first.map_or_else(|| "request".to_owned(), |e| e.field.clone()),
                    message: first.map_or(detail, |e| e.message.clone()),
                }
            }
            (Some(401), _) => Self::Unauthorized { detail },
            (Some(403), _) => Self::Forbidden { detail },
            (Some(404), _) => Self::NotFound,
            (Some(409), kind) if kind == OUT_OF_STOCK => Self::OutOfStock {
                order_id: problem.order_id,
                detail,
            },
            (Some(409), kind) if kind == NOT_CANCELLABLE => Self::NotCancellable { detail },
            (Some(422), kind) if kind == UNKNOWN_BOOK => Self::UnknownBook { detail },
            (Some(422), kind) if kind == KEY_REUSED => Self::KeyReused { detail },
            (Some(429), kind) if kind == RATE_LIMITED => Self::RateLimited {
                retry_after: retry_after(&err),
                detail,
            },
            (Some(500), _) => Self::Failed {
                order_id: problem.order_id,
                detail,
            },
            (Some(503), _) => Self::Unavailable {
                retry_after: retry_after(&err),
                order_id: problem.order_id,
            },
            _ => Self::Unexpected { status, detail },
        }
    }
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { field, message } => write!(f, "invalid {field}: {message}"),
            Self::OutOfStock { detail, .. } => write!(f, "out of stock: {detail}"),
            Self::UnknownBook { detail } => write!(f, "unknown book: {detail}"),
            Self::KeyReused { detail } => write!(f, "idempotency key reused: {detail}"),
            Self::Unauthorized { detail } => write!(f, "a valid bearer token is needed: {detail}"),
            Self::Forbidden { detail } => write!(f, "the token does not allow this: {detail}"),
            Self::NotFound => f.write_str("no order has this id"),
            Self::NotCancellable { detail } => write!(f, "cannot cancel: {detail}"),
            Self::RateLimited { detail, .. } => {
                write!(f, "too many orders for this user: {detail}")
            }
            Self::Unavailable {
                retry_after: Some(wait),
                ..
            } => write!(f, "the Order Processor is unavailable; retry in {wait:?}"),
            Self::Unavailable { .. } => f.write_str("the Order Processor is unavailable"),
            Self::Failed { detail, .. } => write!(f, "the Order Processor failed: {detail}"),
            Self::NoAnswer(source) => write!(f, "no answer from the Order Processor: {source}"),
            Self::Unexpected {
                status: Some(status),
                detail,
            } => write!(f, "unexpected answer {status}: {detail}"),
            Self::Unexpected { detail, .. } => write!(f, "unexpected answer: {detail}"),
        }
    }
}

impl std::error::Error for OrderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoAnswer(source) => Some(source),
            _ => None,
        }
    }
}

fn invalid(field: &str, message: impl fmt::Display) -> OrderError {
    OrderError::Invalid {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

/// A purchase whose values passed every check of the contract.
#[derive(Debug, Clone)]
pub struct Purchase {
    body: types::CreateOrderRequest,
}

impl Purchase {
    /// `quantity` copies of `book_id` for `user_id`; refused, naming the field, if a value
    /// breaks the contract (ids of 1 to 64 characters without control characters or `/`,
    /// a quantity from 1 to 1000).
    pub fn new(
        book_id: impl AsRef<str>,
        quantity: u32,
        user_id: impl AsRef<str>,
    ) -> Result<Self, OrderError> {
        let quantity = std::num::NonZeroU32::new(quantity)
            .filter(|quantity| quantity.get() <= MAX_QUANTITY)
            .ok_or_else(|| invalid("/quantity", format!("must be from 1 to {MAX_QUANTITY}")))?;
        Ok(Self {
            body: types::CreateOrderRequest {
                book_id: types::BookId::try_from(book_id.as_ref())
                    .map_err(|err| invalid("/bookId", err))?,
                quantity: types::Quantity(quantity),
                user_id: types::UserId::try_from(user_id.as_ref())
                    .map_err(|err| invalid("/userId", err))?,
            },
        })
    }
}

/// An idempotency key that passed the contract's checks: 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(key: impl Into<String>) -> Result<Self, OrderError> {
        let key = key.into();
        if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(invalid(
                "Idempotency-Key",
                "must have 1 to 128 visible ASCII characters",
            ));
        }
        Ok(Self(key))
    }
}

/// The Order Processor. Cheap to clone: clones share the connection pool and the hooks.
#[derive(Debug, Clone)]
pub struct OrderProcessor {
    client: Client,
}

impl OrderProcessor {
    /// A client of the service at `base_url` (e.g. `http://order-processor:8082`), with a
    /// 10 s timeout per request.
    pub fn new(base_url: &str) -> Result<Self, OrderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| invalid("base_url", err))?;
        Ok(Self::with_http_client(base_url, http, Hooks::default()))
    }

    /// A client over your own `reqwest::Client` (timeouts, pool) and hooks.
    pub fn with_http_client(base_url: &str, http: reqwest::Client, hooks: Hooks) -> Self {
        Self {
            client: Client::new_with_client(base_url, http, hooks),
        }
    }

    /// The same client, adding to every request the headers `source` answers as it is
    /// sent: an `X-Request-Id`, a W3C `traceparent`. A bearer token stays.
    pub fn with_headers(
        &self,
        source: impl Fn() -> Vec<(HeaderName, HeaderValue)> + Send + Sync + 'static,
    ) -> Self {
        Self::with_http_client(
            self.client.baseurl(),
            self.client.client().clone(),
            self.client.inner().clone().headers(source),
        )
    }

    /// The same client, sending `Authorization: Bearer <token>` with every request, as a
    /// service that checks access needs: a JWT for its audience with the scopes of what it
    /// is used for. The header value is marked sensitive, and neither `Debug` nor an error
    /// shows the token. A token expires: a client for its renewal is cheap, as it shares this
    /// one's connection pool. Refused as `Invalid` (field `token`) when `token` is not a
    /// bearer token of RFC 6750 (a newline read from a file with it, say).
    pub fn with_bearer_token(&self, token: &str) -> Result<Self, OrderError> {
        let hooks = self
            .client
            .inner()
            .clone()
            .with_bearer_token(token)
            .map_err(|err| invalid("token", err))?;
        Ok(Self::with_http_client(
            self.client.baseurl(),
            self.client.client().clone(),
            hooks,
        ))
    }

    /// The generated client, for what this layer does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Places `purchase` once. With `key`, a repeat of the same purchase answers with the
    /// order the first one placed instead of placing another.
    pub async fn place(
        &self,
        purchase: &Purchase,
        key: Option<&IdempotencyKey>,
    ) -> Result<types::Order, OrderError> {
        let mut request = self.client.create_order().body(purchase.body.clone());
        if let Some(key) = key {
            request = request.idempotency_key(key.0.as_str());
        }
        request
            .send()
            .await
            .map(|answer| answer.into_inner())
            .map_err(OrderError::from_client)
    }

    /// Places `purchase` under `key`, and again with the same key and body after each
    /// transient failure (no answer, `429`, `503`), waiting as the service asks, until it has
    /// an outcome or `deadline` has passed; then the last failure is the answer.
    pub async fn place_with_retries(
        &self,
        purchase: &Purchase,
        key: &IdempotencyKey,
        deadline: Duration,
    ) -> Result<types::Order, OrderError> {
        let give_up = Instant::now() + deadline;
        loop {
            let err = match self.place(purchase, Some(key)).await {
                Ok(order) => return Ok(order),
                Err(err) if err.is_transient() => err,
                Err(err) => return Err(err),
            };
            let wait = err.retry_after().unwrap_or(DEFAULT_RETRY_DELAY);
            if Instant::now() + wait >= give_up {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Cancels the confirmed order `id` and gives its stock back; cancelling it again answers
    /// the same cancelled order.
    pub async fn cancel(&self, id: Uuid, reason: Option<&str>) -> Result<types::Order, OrderError> {
        let reason = reason
            .map(types::CancelOrderRequestReason::try_from)
            .transpose()
            .map_err(|err| invalid("/reason", err))?;
        self.client
            .cancel_order()
            .id(id)
            .body(types::CancelOrderRequest { reason })
            .send()
            .await
            .map(|answer| answer.into_inner())
            .map_err(OrderError::from_client)
    }

    /// The order `id`.
    pub async fn order(&self, id: Uuid) -> Result<types::Order, OrderError> {
        self.client
            .get_order()
            .id(id)
            .send()
            .await
            .map(|answer| answer.into_inner())
            .map_err(OrderError::from_client)
    }

    /// Every order of `user_id`, newest first, read `page_size` at a time (1 to 100) by
    /// following `nextCursor`. Boxed, so that it can be polled where it is, without pinning.
    pub fn user_orders(
        &self,
        user_id: &str,
        page_size: u32,
    ) -> BoxStream<'_, Result<types::Order, OrderError>> {
        let checked = types::UserId::try_from(user_id)
            .map_err(|err| invalid("userId", err))
            .and_then(|user| {
                std::num::NonZeroU32::new(page_size)
                    .filter(|size| size.get() <= MAX_PAGE)
                    .map(|size| (user, size))
                    .ok_or_else(|| invalid("limit", format!("must be from 1 to {MAX_PAGE}")))
            });
        let (user, size) = match checked {
            Ok(checked) => checked,
            Err(err) => return stream::once(async { Err(err) }).boxed(),
        };
        // The page to read next: `Some(None)` the first, `Some(Some(cursor))` a later one,
        // `None` once the last page was read.
        let pages = stream::try_unfold(Some(None), move |next: Option<Option<types::Cursor>>| {
            let user = user.clone();
            async move {
                let Some(cursor) = next else {
                    return Ok(None);
                };
                let mut request = self.client.list_user_orders().user_id(user).limit(size);
                if let Some(cursor) = cursor {
                    request = request.cursor(cursor);
                }
                let page = request
                    .send()
                    .await
                    .map_err(OrderError::from_client)?
                    .into_inner();
                let items = stream::iter(page.items.into_iter().map(Ok));
                Ok(Some((items, page.next_cursor.map(Some))))
            }
        });
        pages.try_flatten().boxed()
    }
}
