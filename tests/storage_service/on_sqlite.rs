//! The suite on a SQLite file of its own for each test.

use std::path::PathBuf;

use order_processor::storage::sqlite::SqliteStore;

pub(crate) type Store = SqliteStore;

/// The test's directory, removed when the test ends.
pub(crate) struct Guard(PathBuf);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) async fn open_store() -> (Store, Guard) {
    let dir = std::env::temp_dir().join(format!("storage-service-test-{}", uuid::Uuid::new_v4()));
    let store = SqliteStore::open(&dir.join("s.db")).expect("open a fresh store");
    (store, Guard(dir))
}

// The one suite, compiled once per store on purpose: `super::open_store` differs.
#[allow(clippy::duplicate_mod)]
#[path = "suite.rs"]
mod suite;
