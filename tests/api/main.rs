//! Integration tests: the Order Processor over real HTTP, on port 0, against both storage
//! adapters (the embedded SQLite store, and the reference Storage Service through the
//! progenitor client, on SQLite and on PostgreSQL).

#[path = "../support"]
mod support {
    pub mod catalogue;
    pub mod fs;
    pub mod net;
    pub mod port;
    pub mod postgres;
    pub mod problem;
    pub mod sqlite;
}

mod cancel;
mod concurrency;
mod errors;
mod faults;
mod health;
mod helpers;
mod orders;
mod replicas;
mod user_limit;
