//! The books: the catalogue operations, and the demo catalogue a new file starts with.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::domain::model::{Book, BookId, Stock};
use crate::domain::storage::{Catalogue, StorageResult};

use super::SqliteStore;
use super::rows::{BOOK_COLUMNS, book_from_row};
use crate::storage::demo;
use crate::storage::sql::not_found;

impl SqliteStore {
    /// Loads the demo catalogue into a store that has no book yet; answers whether it did.
    /// A store that has any book is left alone, so that restarts never undo sales or
    /// restocking.
    pub async fn seed_demo_catalogue(&self) -> StorageResult<bool> {
        self.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let has_books: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM books)", [], |r| r.get(0))?;
            if has_books {
                return Ok(false);
            }
            {
                let mut insert = tx.prepare(
                    "INSERT INTO books (id, title, author, price, currency, stock)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for book in &demo::CATALOGUE {
                    insert.execute(params![
                        book.id,
                        book.title,
                        book.author,
                        book.price_cents,
                        demo::CURRENCY,
                        book.stock
                    ])?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

impl Catalogue for SqliteStore {
    async fn book(&self, id: &BookId) -> StorageResult<Book> {
        let id = id.clone();
        self.run(move |conn| {
            conn.prepare_cached(&format!("SELECT {BOOK_COLUMNS} FROM books WHERE id = ?1"))?
                .query_row([id.as_str()], book_from_row)
                .optional()?
                .ok_or_else(not_found)
        })
        .await
    }

    async fn books(&self) -> StorageResult<Vec<Book>> {
        self.run(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {BOOK_COLUMNS} FROM books ORDER BY id"))?;
            let books = stmt
                .query_map([], book_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(books)
        })
        .await
    }

    async fn put_book(&self, book: &Book) -> StorageResult<Book> {
        let book = book.clone();
        self.run(move |conn| {
            // An upsert, not INSERT OR REPLACE: replacing deletes the row first, which the
            // orders' foreign keys forbid once a book has been ordered.
            let stored = conn
                .prepare_cached(&format!(
                    "INSERT INTO books (id, title, author, price, currency, stock)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET
                         title = excluded.title,
                         author = excluded.author,
                         price = excluded.price,
                         currency = excluded.currency,
                         stock = excluded.stock
                     RETURNING {BOOK_COLUMNS}"
                ))?
                .query_row(
                    params![
                        book.id.as_str(),
                        book.details.title,
                        book.details.author,
                        book.details.price.minor_units(),
                        book.details.currency.as_str(),
                        book.details.stock.get()
                    ],
                    book_from_row,
                )?;
            Ok(stored)
        })
        .await
    }

    async fn set_stock(&self, id: &BookId, stock: Stock) -> StorageResult<Book> {
        let id = id.clone();
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "UPDATE books SET stock = ?2 WHERE id = ?1 RETURNING {BOOK_COLUMNS}"
            ))?
            .query_row(params![id.as_str(), stock.get()], book_from_row)
            .optional()?
            .ok_or_else(not_found)
        })
        .await
    }
}
