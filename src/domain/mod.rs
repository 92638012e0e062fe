//! The order rules, free of HTTP and of generated types: checked values, the storage port,
//! and the flow that places an order without overselling.

pub mod model;
pub mod orders;
pub mod storage;
