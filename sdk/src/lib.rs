#![doc = include_str!("../README.md")]

use std::time::Duration;

/// The generated client, re-exported at the crate root. It is kept in its own module only so
/// that the lint allowance below does not cover the hand-written code.
// progenitor's doc comments break clippy's `doc_lazy_continuation`, and its code is not ours
// to restyle.
#[allow(clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/client.rs"));
}

pub use generated::*;

pub mod hooks;
mod orders;

pub use orders::{IdempotencyKey, MAX_PAGE, MAX_QUANTITY, OrderError, OrderProcessor, Purchase};
/// The crates whose types this crate's signatures use, at the versions it was built with.
pub use {chrono, reqwest, uuid};

/// The Problem the service answered with, when `err` is one of its documented error answers
/// (every 4xx and 5xx of the contract); `None` when no such answer arrived (the request could
/// not be sent, the connection failed, or the answer was not in the contract).
pub fn problem(err: &Error<types::Problem>) -> Option<&types::Problem> {
    match err {
        Error::ErrorResponse(response) => Some(response.as_ref()),
        _ => None,
    }
}

/// How long the service asked to wait before retrying, from the `Retry-After` header of a
/// 429 or a 503. Only the delay-seconds form is read: it is the only one the contract
/// documents.
pub fn retry_after(err: &Error<types::Problem>) -> Option<Duration> {
    let Error::ErrorResponse(response) = err else {
        return None;
    };
    let seconds = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds))
}
