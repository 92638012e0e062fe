//! The suite on a PostgreSQL database of its own for each test, on the server this test
//! binary shares.

use order_processor::storage::postgres::PostgresStore;

use crate::support::postgres::PgServer;

pub(crate) type Store = PostgresStore;

/// Nothing to clean up: the databases go with the server when the tests end.
pub(crate) type Guard = ();

pub(crate) async fn open_store() -> (Store, Guard) {
    let config = PgServer::shared().create_database().await;
    let store = PostgresStore::connect(&config)
        .await
        .expect("open a fresh store");
    (store, ())
}

// The one suite, compiled once per store on purpose: `super::open_store` differs.
#[allow(clippy::duplicate_mod)]
#[path = "suite/mod.rs"]
mod suite;
