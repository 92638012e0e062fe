//! The Order Processor: takes purchases from the Books Service, records them in the Storage
//! Service and takes the stock.

pub mod access;
pub mod allocator;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod generated;
pub mod http;
pub mod metrics;
pub mod periodic;
pub mod recovery;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod trace;
pub mod watched;
