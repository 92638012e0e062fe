//! Problem documents (RFC 9457): the one shape of every error answer, of both services.
//! Built here from a kind and a detail, and never from an internal error's text.

use poem::http::StatusCode;
use poem_openapi::error::{
    ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};

use crate::generated::{order_processor::server as api, storage_service::server as storage_api};

/// A kind of problem: its stable `type`, its title and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub type_: &'static str,
    pub title: &'static str,
    pub status: StatusCode,
}

macro_rules! kinds {
    ($($name:ident = $status:ident, $type_:literal, $title:literal;)*) => {
        $(pub const $name: &Kind = &Kind { type_: $type_, title: $title, status: StatusCode::$status };)*

        /// Every kind, so that a document of the services can be checked against them.
        pub const KINDS: &[&Kind] = &[$($name),*];
    };
}

kinds! {
    INVALID_REQUEST = BAD_REQUEST, "/problems/invalid-request", "The request is invalid";
    NOT_FOUND = NOT_FOUND, "/problems/not-found", "Not found";
    METHOD_NOT_ALLOWED = METHOD_NOT_ALLOWED, "/problems/method-not-allowed", "Method not allowed";
    UNAUTHORIZED = UNAUTHORIZED, "/problems/unauthorized", "A valid bearer token is needed";
    FORBIDDEN = FORBIDDEN, "/problems/forbidden", "The token does not allow this";
    OUT_OF_STOCK = CONFLICT, "/problems/out-of-stock", "Out of stock";
    CONFLICT = CONFLICT, "/problems/conflict", "Conflict";
    NOT_CANCELLABLE = CONFLICT, "/problems/not-cancellable", "Only a confirmed order can be cancelled";
    PAYLOAD_TOO_LARGE = PAYLOAD_TOO_LARGE, "/problems/payload-too-large", "The request body is too large";
    UNSUPPORTED_MEDIA_TYPE = UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type", "The request body must be application/json";
    UNKNOWN_BOOK = UNPROCESSABLE_ENTITY, "/problems/unknown-book", "Unknown book";
    IDEMPOTENCY_KEY_REUSED = UNPROCESSABLE_ENTITY, "/problems/idempotency-key-reused", "The idempotency key was used for another order";
    RATE_LIMITED = TOO_MANY_REQUESTS, "/problems/rate-limited", "Too many orders for this user";
    INTERNAL = INTERNAL_SERVER_ERROR, "/problems/internal", "Internal error";
    STORAGE_UNAVAILABLE = SERVICE_UNAVAILABLE, "/problems/storage-unavailable", "The storage is unavailable";
    OVERLOADED = SERVICE_UNAVAILABLE, "/problems/overloaded", "The service is at its limit of requests in progress";
    DEADLINE_EXCEEDED = SERVICE_UNAVAILABLE, "/problems/deadline-exceeded", "The request did not finish in time";
    REQUEST_TIMEOUT = REQUEST_TIMEOUT, "/problems/request-timeout", "The request body did not arrive in time";
    URI_TOO_LONG = URI_TOO_LONG, "/problems/uri-too-long", "The request target is too long";
    HEADERS_TOO_LARGE = REQUEST_HEADER_FIELDS_TOO_LARGE, "/problems/headers-too-large", "The request headers are too large";
}

/// A problem before it takes the shape of one service's generated `Problem` type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: &'static Kind,
    pub detail: Option<String>,
    pub field_errors: Vec<(String, String)>,
    pub order_id: Option<uuid::Uuid>,
    /// For an out-of-stock problem of the Storage Service: the copies in stock.
    pub available: Option<i64>,
}

impl Problem {
    pub fn new(kind: &'static Kind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: Some(detail.into()),
            field_errors: Vec::new(),
            order_id: None,
            available: None,
        }
    }

    /// A 400 for one field, as the domain found it.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            field_errors: vec![(field.to_owned(), message.clone())],
            ..Self::new(INVALID_REQUEST, message)
        }
    }

    pub fn with_order_id(mut self, order_id: uuid::Uuid) -> Self {
        self.order_id = Some(order_id);
        self
    }

    /// The problem of a request that poem could not parse. Poem's message names the field
    /// and the broken constraint; it never holds the offending value itself.
    pub fn from_request_error(err: &poem::Error, path_params: &[&str]) -> Self {
        if let Some(err) = err.downcast_ref::<ParseParamError>() {
            let name = path_param_name(err.name, path_params).unwrap_or(err.name);
            return Self::invalid_field(name, err.reason.clone());
        }
        if let Some(err) = err.downcast_ref::<ParsePathError>() {
            let name = path_param_name(err.name, path_params).unwrap_or(err.name);
            return Self::invalid_field(name, err.reason.clone());
        }
        if let Some(err) = err.downcast_ref::<ParseRequestPayloadError>() {
            let mut problem = Self::new(
                INVALID_REQUEST,
                format!("the body is invalid: {}", err.reason),
            );
            if let Some((field, message)) = field_of_payload_error(&err.reason) {
                problem
                    .field_errors
                    .push((format!("/{field}"), message.to_owned()));
            }
            return problem;
        }
        if let Some(err) = err.downcast_ref::<ContentTypeError>() {
            return Self::new(UNSUPPORTED_MEDIA_TYPE, err.to_string());
        }
        match err.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                PAYLOAD_TOO_LARGE,
                "the request body is larger than the limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                UNSUPPORTED_MEDIA_TYPE,
                "the request body must be application/json",
            ),
            _ => Self::new(INVALID_REQUEST, "the request could not be read"),
        }
    }
}

/// The field that poem-openapi names in a payload error, and what it says of it:
/// `failed to parse "Order": field `quantity` verification failed. minimum(1, ...)`.
fn field_of_payload_error(reason: &str) -> Option<(&str, &str)> {
    let (_, rest) = reason.split_once("field `")?;
    let (field, message) = rest.split_once('`')?;
    let message = message
        .split_once(" (occurred while parsing")
        .map_or(message, |(message, _)| message);
    Some((field, message.trim()))
}

/// The spec's name of a path parameter that poem calls `param<N>`.
fn path_param_name<'a>(poem_name: &str, path_params: &[&'a str]) -> Option<&'a str> {
    let index: usize = poem_name.strip_prefix("param")?.parse().ok()?;
    path_params.get(index).copied()
}

impl From<Problem> for api::Problem {
    fn from(problem: Problem) -> Self {
        Self {
            type_: problem.kind.type_.to_owned(),
            title: problem.kind.title.to_owned(),
            status: i32::from(problem.kind.status.as_u16()),
            detail: problem.detail,
            instance: None,
            errors: field_errors(problem.field_errors, |field, message| api::FieldError {
                field,
                message,
            }),
            order_id: problem.order_id,
        }
    }
}

impl From<Problem> for storage_api::Problem {
    fn from(problem: Problem) -> Self {
        Self {
            type_: problem.kind.type_.to_owned(),
            title: problem.kind.title.to_owned(),
            status: i32::from(problem.kind.status.as_u16()),
            detail: problem.detail,
            instance: None,
            errors: field_errors(problem.field_errors, |field, message| {
                storage_api::FieldError { field, message }
            }),
            available: problem.available,
        }
    }
}

fn field_errors<T>(
    errors: Vec<(String, String)>,
    make: impl Fn(String, String) -> T,
) -> Option<Vec<T>> {
    if errors.is_empty() {
        None
    } else {
        Some(
            errors
                .into_iter()
                .map(|(field, message)| make(field, message))
                .collect(),
        )
    }
}

impl api::FromRequestError for api::Problem {
    fn from_request_error(err: poem::Error, path_params: &[&str]) -> Self {
        Problem::from_request_error(&err, path_params).into()
    }
}

impl storage_api::FromRequestError for storage_api::Problem {
    fn from_request_error(err: poem::Error, path_params: &[&str]) -> Self {
        Problem::from_request_error(&err, path_params).into()
    }
}
