//! Adapters of the storage port.

mod channel;
mod cursor;
mod demo;
pub mod http;
pub mod postgres;
pub mod resilience;
mod rules;
mod sql;
pub mod sqlite;
pub mod timestamp;
