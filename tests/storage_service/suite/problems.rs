//! What every error answer must be: a Problem whose status is the HTTP status, in JSON,
//! with nothing of an internal error in it.

use std::fmt::Debug;

use order_processor::generated::storage_service::client::{Error, ResponseValue, types};
use serde_json::Value;

use super::failures::SECRET;

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
pub(super) fn problem<T: Debug>(
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
pub(super) async fn raw_problem(response: reqwest::Response, status: u16) -> Value {
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
pub(super) fn field(problem: &Value) -> &str {
    problem["errors"][0]["field"].as_str().unwrap_or_default()
}
