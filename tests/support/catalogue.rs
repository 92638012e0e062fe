//! Books for the catalogue a test sets up, and its stock as the store has it.

use order_processor::domain::{
    model::{Book, BookDetails, BookId, Currency, Money, Stock},
    storage::Catalogue,
};

pub fn book_id(id: &str) -> BookId {
    BookId::parse(id).expect("a valid book id")
}

/// Book `id` by "An Author", titled after its id, at `price` cents of EUR, with `stock` copies.
pub fn book(id: &str, price: i64, stock: i64) -> Book {
    BookDetails {
        title: format!("Title of {id}"),
        author: "An Author".to_owned(),
        price: Money::new(price).expect("a valid price"),
        currency: Currency::parse("EUR").expect("a valid currency"),
        stock: Stock::new(stock).expect("a valid stock"),
    }
    .with_id(book_id(id))
}

/// The copies of book `id` in stock, read from `store` itself rather than a service over it.
pub async fn stock_of(store: &impl Catalogue, id: &str) -> i64 {
    store
        .book(&book_id(id))
        .await
        .expect("read the book")
        .details
        .stock
        .get()
}
