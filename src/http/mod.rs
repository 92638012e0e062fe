//! The HTTP layer: the generated server interfaces, the handlers that implement them, and
//! what every response shares (Problem errors, request ids, access logs, body limit).

pub mod problem;
