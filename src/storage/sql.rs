//! What the SQLite and PostgreSQL stores share: how the failure of an operation on the
//! database becomes an answer of the port, and how a store reads its schema version. Each
//! store only says which of its database's errors are worth a retry.

use crate::domain::model::InvalidValue;
use crate::domain::storage::StorageError;

/// An error of a database driver, classified by the store that knows its codes.
pub(crate) trait DatabaseError {
    /// `Unavailable` when trying again can help, `Failed` when it cannot.
    fn classify(self) -> StorageError;
}

/// What an operation on the database can fail with: a database error, classified only at the
/// end, or an answer of the port.
pub(crate) enum OpError<E> {
    Database(E),
    Storage(StorageError),
}

impl<E: DatabaseError> From<E> for OpError<E> {
    fn from(e: E) -> Self {
        Self::Database(e)
    }
}

impl<E> From<StorageError> for OpError<E> {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// A stored value that breaks the domain's rules: the database was changed behind the store.
impl<E> From<InvalidValue> for OpError<E> {
    fn from(e: InvalidValue) -> Self {
        Self::Storage(StorageError::Failed(
            format!("a stored record breaks its rules: {e}").into(),
        ))
    }
}

impl<E: DatabaseError> From<OpError<E>> for StorageError {
    fn from(e: OpError<E>) -> Self {
        match e {
            OpError::Database(e) => e.classify(),
            OpError::Storage(e) => e,
        }
    }
}

pub(crate) fn not_found<E>() -> OpError<E> {
    StorageError::NotFound.into()
}

pub(crate) fn conflict<E>(message: String) -> OpError<E> {
    StorageError::Conflict(message).into()
}

/// How many of the `known` schema steps a database with schema `version` has had. A version
/// beyond them fails: the database was written by a newer build, or is not this service's,
/// and reading it as if it were could misread every record.
pub(crate) fn steps_done(version: i64, known: usize) -> Result<usize, StorageError> {
    usize::try_from(version)
        .ok()
        .filter(|done| *done <= known)
        .ok_or_else(|| {
            StorageError::Failed(
                format!(
                    "the database has schema version {version}, this build knows up to \
                     {known}: it was written by a newer build, or is not this service's"
                )
                .into(),
            )
        })
}
