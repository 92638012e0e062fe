//! The service under test: a reference Storage Service started over a store, the calls the
//! tests make of it, and the bodies they send.

use std::{num::NonZeroU32, sync::Arc};

use order_processor::{
    domain::storage::{Catalogue, OrderStore},
    generated::storage_service::client::{Client, Error, ResponseValue, types},
    http::{server::Running, storage_api::spawn_reference_storage},
    storage::http::Channel,
};
use serde_json::Value;
use uuid::Uuid;

use super::{Guard, open_store};
use crate::support::net::LOOPBACK;

/// A reference Storage Service on a free loopback port, and two ways to talk to it.
pub(super) struct Service {
    pub(super) client: Client,
    pub(super) http: reqwest::Client,
    url: String,
    // Declared before the guard so that the server is told to stop before its database is
    // removed.
    _server: Running,
    _guard: Guard,
}

impl Service {
    pub(super) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Puts a book at 12.99 EUR with `stock` copies.
    pub(super) async fn book(&self, id: &str, stock: i64) -> types::Book {
        self.client
            .put_book()
            .id(id)
            .body(book_input("A Title", 1299, stock))
            .send()
            .await
            .expect("put a book")
            .into_inner()
    }

    pub(super) async fn stock(&self, book: &str) -> i64 {
        *self
            .client
            .get_book()
            .id(book)
            .send()
            .await
            .expect("read a book")
            .quantity
    }

    /// Records a new pending order and checks that it was created, not found.
    pub(super) async fn order(&self, book: &str, user: &str, quantity: u32) -> types::Order {
        let response = self
            .client
            .create_order()
            .body(new_order(Uuid::new_v4(), book, user, quantity))
            .send()
            .await
            .expect("create an order");
        assert_eq!(response.status().as_u16(), 201);
        response.into_inner()
    }

    pub(super) async fn get_order(&self, id: Uuid) -> types::Order {
        self.client
            .get_order()
            .id(id)
            .send()
            .await
            .expect("read an order")
            .into_inner()
    }

    pub(super) async fn take(&self, id: Uuid) -> types::StockAllocation {
        self.client
            .take_stock()
            .id(id)
            .send()
            .await
            .expect("take the stock")
            .into_inner()
    }

    pub(super) async fn change(
        &self,
        id: Uuid,
        from: types::OrderStatus,
        to: types::OrderStatus,
    ) -> Result<ResponseValue<types::Order>, Error<types::Problem>> {
        self.client
            .update_order_status()
            .id(id)
            .body(status_change(from, to, None))
            .send()
            .await
    }

    pub(super) async fn list(
        &self,
        user: &str,
        limit: u32,
        cursor: Option<&types::Cursor>,
    ) -> types::OrderPage {
        let mut request = self.client.list_orders().user_id(user).limit(limit);
        if let Some(cursor) = cursor {
            request = request.cursor(cursor.clone());
        }
        request.send().await.expect("list orders").into_inner()
    }
}

/// Starts the service over a fresh store.
pub(super) async fn start() -> Service {
    let (store, guard) = open_store().await;
    start_over(Arc::new(store), guard).await
}

pub(super) async fn start_over<S: OrderStore + Catalogue>(
    storage: Arc<S>,
    guard: Guard,
) -> Service {
    let server = spawn_reference_storage(storage, LOOPBACK)
        .await
        .expect("start the reference Storage Service");
    let url = server.url();
    Service {
        // The reference service in these tests checks no token: the client sends none.
        client: Client::new(&url, Channel::default()),
        http: reqwest::Client::new(),
        url,
        _server: server,
        _guard: guard,
    }
}

pub(super) fn book_input(title: &str, price: i64, stock: i64) -> types::BookInput {
    types::BookInput::builder()
        .title(title)
        .author("An Author")
        .price(price)
        .currency("EUR")
        .quantity(stock)
        .try_into()
        .expect("a valid book")
}

pub(super) fn new_order(id: Uuid, book: &str, user: &str, quantity: u32) -> types::NewOrder {
    types::NewOrder::builder()
        .order_id(id)
        .book_id(book)
        .user_id(user)
        .quantity(NonZeroU32::new(quantity).expect("a positive quantity"))
        .status(types::NewOrderStatus::Pending)
        .try_into()
        .expect("a valid order")
}

pub(super) fn status_change(
    from: types::OrderStatus,
    to: types::OrderStatus,
    reason: Option<&str>,
) -> types::StatusChange {
    types::StatusChange {
        from,
        to,
        reason: reason.map(|reason| reason.try_into().expect("a valid reason")),
    }
}

pub(super) fn as_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}
