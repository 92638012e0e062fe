//! What every error answer must be: a Problem whose status is the HTTP status, in JSON,
//! with nothing of an internal error in it, read through the typed client or as it came.

use std::fmt::Debug;

use order_processor::generated::storage_service::client::{Error, ResponseValue, types};
use serde_json::Value;

use super::failures::SECRET;
use crate::support::problem::{self, assert_json_content_type, check_problem};

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

/// Fails when `body` carries text of the error behind it.
fn assert_nothing_internal(body: &Value) {
    let text = body.to_string().to_lowercase();
    for marker in INTERNAL_MARKERS {
        assert!(!text.contains(marker), "internal text {marker:?} in {body}");
    }
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
            let body = serde_json::to_value(&problem).unwrap();
            check_problem(&body, status);
            assert_nothing_internal(&body);
            problem
        }
        other => panic!("expected a {status} Problem, got {other:?}"),
    }
}

/// The Problem of a raw response that must have `status`.
pub(super) async fn raw_problem(response: reqwest::Response, status: u16) -> Value {
    let body = problem::problem(response, status).await;
    assert_nothing_internal(&body);
    body
}

/// The first field a 400 Problem names.
pub(super) fn field(problem: &Value) -> &str {
    problem["errors"][0]["field"].as_str().unwrap_or_default()
}
