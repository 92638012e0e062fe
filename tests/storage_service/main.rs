//! The reference Storage Service over real HTTP, on each of its stores: the same suite runs
//! on a SQLite file and on a PostgreSQL database of a real server that the tests start; an
//! outage of that server is answered with 503 until it returns.

#[path = "../support/postgres.rs"]
mod postgres_server;

mod on_postgres;
mod on_sqlite;
mod outage;
