//! Adapters of the storage port.

pub mod http;
pub mod resilience;
pub mod sqlite;
