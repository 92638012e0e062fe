//! The reference Storage Service over real HTTP, on each of its stores: the same suite runs
//! on a SQLite file and on a PostgreSQL database of a real server that the tests start; an
//! outage of that server is answered with 503 until it returns.

#[path = "../support"]
mod support {
    pub mod fs;
    pub mod net;
    pub mod port;
    pub mod postgres;
    pub mod problem;
    pub mod sqlite;
}

mod on_postgres;
mod on_sqlite;
mod outage;
