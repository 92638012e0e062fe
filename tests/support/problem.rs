//! What every error answer of both services shares: a Problem in JSON whose `status` is
//! the HTTP status, with a `type` under `/problems/` and a `title`.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

/// The body of a response that must be a Problem with `status`; checks its shape.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    if actual != status {
        let body = response.text().await.unwrap_or_default();
        panic!("expected status {status}, got {actual}: {body}");
    }
    assert_json_content_type(response.headers());
    let body: Value = response.json().await.expect("a JSON problem body");
    check_problem(&body, status);
    body
}

pub fn assert_json_content_type(headers: &HeaderMap) {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?}"
    );
}

/// Checks the fields every Problem has, whichever way its body was read.
pub fn check_problem(body: &Value, status: u16) {
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
}
