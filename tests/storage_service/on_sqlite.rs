//! The suite on a SQLite file of its own for each test.

use order_processor::storage::sqlite::SqliteStore;

use crate::support::{fs::TempDir, sqlite::fresh_store};

pub(crate) type Store = SqliteStore;

/// The test's directory, removed when the test ends.
pub(crate) type Guard = TempDir;

pub(crate) async fn open_store() -> (Store, Guard) {
    fresh_store()
}

// The one suite, compiled once per store on purpose: `super::open_store` differs.
#[allow(clippy::duplicate_mod)]
#[path = "suite/mod.rs"]
mod suite;
