//! A SQLite store on a file of its own, in a directory that goes when the test ends.

use order_processor::storage::sqlite::SqliteStore;

use super::fs::TempDir;

/// The store's file in its directory, for a second store on the same database.
pub const FILE: &str = "store.db";

/// A fresh, empty store; it lives as long as the directory returned with it.
pub fn fresh_store() -> (SqliteStore, TempDir) {
    let dir = TempDir::new();
    let store = SqliteStore::open(&dir.path().join(FILE)).expect("open a fresh store");
    (store, dir)
}
