//! The cursor of an order list, shared by the stores that page on an insertion sequence:
//! the sequence number of the last order of a page, in decimal. Callers treat it as opaque.

use crate::domain::{model::Cursor, storage::StorageError};

pub(crate) fn encode(seq: i64) -> Cursor {
    Cursor(seq.to_string())
}

pub(crate) fn decode(cursor: &Cursor) -> Result<i64, StorageError> {
    let text = cursor.0.as_str();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StorageError::InvalidCursor);
    }
    text.parse::<i64>()
        .ok()
        .filter(|seq| *seq > 0)
        .ok_or(StorageError::InvalidCursor)
}
