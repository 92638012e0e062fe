//! The embedded store: the storage port over one SQLite file, so that the Order Processor runs
//! without a remote Storage Service. The database itself enforces the stock rules, so that
//! not even two processes sharing the file can oversell.
//!
//! Along its seams: `schema` makes and migrates the file, `rows` turns rows into domain
//! values, `orders` records orders and moves their stock, `catalogue` keeps the books.

mod catalogue;
mod orders;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode};

use crate::domain::storage::{StorageError, StorageResult};

use crate::storage::sql::{self, DatabaseError};

/// The storage port over a SQLite file. Clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    /// One connection: SQLite admits one writer at a time anyway, and a single connection
    /// makes this process's operations queue here instead of on the busy timeout.
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it and its parent directories if needed, and
    /// brings its schema up to date.
    pub fn open(path: &Path) -> StorageResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::Failed(format!("cannot create {}: {e}", parent.display()).into())
            })?;
        }
        let opening = |e: rusqlite::Error| match e.classify() {
            StorageError::Failed(e) => StorageError::Failed(
                format!("cannot open the SQLite database {}: {e}", path.display()).into(),
            ),
            other => other,
        };
        let mut conn = Connection::open(path).map_err(opening)?;
        schema::configure(&mut conn).map_err(opening)?;
        schema::migrate(&mut conn).map_err(|e| match e {
            sql::OpError::Database(e) => opening(e),
            sql::OpError::Storage(e) => e,
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_owned()),
        })
    }

    /// Runs `op` on the connection off the async threads, since every SQLite call blocks.
    async fn run<T, F>(&self, op: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, OpError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            // A panic inside an operation poisons the lock. Its transaction has rolled back,
            // but the bug that panicked is still there: fail loudly, and let the health check
            // report it, rather than go on as if nothing happened.
            let mut conn = conn.lock().map_err(|_| {
                StorageError::Failed(
                    "the SQLite connection is unusable: an earlier operation panicked".into(),
                )
            })?;
            op(&mut conn).map_err(StorageError::from)
        })
        .await;
        joined.unwrap_or_else(|e| Err(StorageError::Failed(Box::new(e))))
    }
}

type OpError = sql::OpError<rusqlite::Error>;

/// Busy and locked mean another connection holds the file for now: worth a retry. Anything
/// else from SQLite is a bug, a broken file or a full disk, which a retry does not mend.
impl DatabaseError for rusqlite::Error {
    fn classify(self) -> StorageError {
        match self.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StorageError::Unavailable(Box::new(self))
            }
            _ => StorageError::Failed(Box::new(self)),
        }
    }
}
