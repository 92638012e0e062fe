//! The demo catalogue that a Storage Service with no book starts with, whatever its store.

/// A demo catalogue: stocks run down to 1 and 0 so that the out-of-stock path can be tried
/// straight away.
pub(crate) struct DemoBook {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) author: &'static str,
    pub(crate) price_cents: i64,
    pub(crate) stock: i64,
}

pub(crate) const CURRENCY: &str = "EUR";

pub(crate) const CATALOGUE: [DemoBook; 5] = [
    DemoBook {
        id: "book-1",
        title: "The Rust Programming Language",
        author: "Steve Klabnik and Carol Nichols",
        price_cents: 3999,
        stock: 10,
    },
    DemoBook {
        id: "book-2",
        title: "Designing Data-Intensive Applications",
        author: "Martin Kleppmann",
        price_cents: 4550,
        stock: 5,
    },
    DemoBook {
        id: "book-3",
        title: "Zero To Production In Rust",
        author: "Luca Palmieri",
        price_cents: 3900,
        stock: 3,
    },
    DemoBook {
        id: "book-4",
        title: "Rust for Rustaceans",
        author: "Jon Gjengset",
        price_cents: 3499,
        stock: 1,
    },
    DemoBook {
        id: "book-5",
        title: "Programming Rust",
        author: "Jim Blandy, Jason Orendorff and Leonora F. S. Tindall",
        price_cents: 5499,
        stock: 0,
    },
];
