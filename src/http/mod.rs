//! The HTTP layer: the generated server interfaces, the handlers that implement them, and
//! what every response shares (Problem errors, request ids, access logs, body limit), and
//! the server with its limits.

mod connections;
pub mod limits;
pub mod orders_api;
pub mod problem;
pub mod server;
pub mod storage_api;
pub mod unexpected;
pub mod user_limit;
pub(crate) mod wire;

/// What a 503 asks the caller to wait, in seconds: long enough for a restarting Storage
/// Service, short enough for a purchase to go through soon after.
pub const RETRY_AFTER_SECONDS: i32 = 2;
