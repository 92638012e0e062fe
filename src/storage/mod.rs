//! Adapters of the storage port.

pub mod http;
pub mod sqlite;
