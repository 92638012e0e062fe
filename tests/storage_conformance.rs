//! The storage port's conformance suite: every rule of the port, checked the same way on
//! each store (the SQLite store and the PostgreSQL store, on a real server this test
//! starts). What only one store has to show stays apart: SQLite's file, locking and schema
//! tests beside its store, PostgreSQL's (replicas, server-side constraints, an outage) in
//! `postgres_only` below, since they need the test server.

mod support {
    pub mod catalogue;
    pub mod fs;
    pub mod port;
    pub mod postgres;
    pub mod sqlite;
}

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use order_processor::{
    domain::{
        model::{
            AllocationState, BookDetails, Currency, Cursor, Money, NewOrder, Order, OrderId,
            OrderQuery, OrderStatus, PageLimit, Quantity, StatusChange, Stock, UserId,
        },
        storage::{Catalogue, OrderStore, StorageError},
    },
    storage::{
        postgres::{PostgresConfig, PostgresStore},
        sqlite::SqliteStore,
    },
};

use support::{
    catalogue::{book, book_id, stock_of},
    fs::TempDir,
    port,
    postgres::PgServer,
};

/// A fresh, empty store of one kind, and more handles on the same database.
trait Fixture: Sized {
    type Store: OrderStore + Catalogue + Clone;

    async fn new() -> Self;
    fn store(&self) -> Self::Store;
    /// A second store on the same database, sharing nothing with the first but the data.
    async fn another_store(&self) -> Self::Store;
    async fn seed_demo_catalogue(store: &Self::Store) -> bool;
}

/// A SQLite file in a directory of its own, removed when the test ends.
struct Sqlite {
    store: SqliteStore,
    dir: TempDir,
}

impl Fixture for Sqlite {
    type Store = SqliteStore;

    async fn new() -> Self {
        let (store, dir) = support::sqlite::fresh_store();
        Self { store, dir }
    }

    fn store(&self) -> SqliteStore {
        self.store.clone()
    }

    async fn another_store(&self) -> SqliteStore {
        SqliteStore::open(&self.dir.path().join(support::sqlite::FILE)).unwrap()
    }

    async fn seed_demo_catalogue(store: &SqliteStore) -> bool {
        store.seed_demo_catalogue().await.unwrap()
    }
}

/// A database of its own on the test binary's PostgreSQL server.
struct Postgres {
    config: PostgresConfig,
    store: PostgresStore,
}

impl Fixture for Postgres {
    type Store = PostgresStore;

    async fn new() -> Self {
        let config = PgServer::shared().create_database().await;
        let store = PostgresStore::connect(&config).await.unwrap();
        Self { config, store }
    }

    fn store(&self) -> PostgresStore {
        self.store.clone()
    }

    async fn another_store(&self) -> PostgresStore {
        PostgresStore::connect(&self.config).await.unwrap()
    }

    async fn seed_demo_catalogue(store: &PostgresStore) -> bool {
        store.seed_demo_catalogue().await.unwrap()
    }
}

fn new_order(book: &str, user: &str, quantity: i64) -> NewOrder {
    NewOrder {
        id: OrderId::generate(),
        book_id: book_id(book),
        user_id: UserId::parse(user).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
    }
}

fn change(from: OrderStatus, to: OrderStatus, reason: Option<&str>) -> StatusChange {
    StatusChange {
        from,
        to,
        reason: reason.map(str::to_owned),
    }
}

fn query(user: &str, limit: i64, cursor: Option<Cursor>) -> OrderQuery {
    OrderQuery {
        user_id: Some(UserId::parse(user).unwrap()),
        status: None,
        created_before: None,
        limit: PageLimit::new(limit).unwrap(),
        cursor,
    }
}

/// A fresh store with `book-1` at 12.50 EUR and `stock` copies.
async fn store_with_book<F: Fixture>(stock: i64) -> (F, F::Store) {
    let fixture = F::new().await;
    let store = fixture.store();
    store.put_book(&book("book-1", 1250, stock)).await.unwrap();
    (fixture, store)
}

async fn place<S: OrderStore>(store: &S, quantity: i64) -> Order {
    store
        .create_order(&new_order("book-1", "user-1", quantity))
        .await
        .unwrap()
        .order
}

/// Defines each listed `async fn name<F: Fixture>()` as one test per store.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name::<super::Sqlite>().await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name::<super::Postgres>().await
                }
            )*
        }
    };
}

async fn the_demo_catalogue_is_seeded_only_into_an_empty_store<F: Fixture>() {
    let fixture = F::new().await;
    let store = fixture.store();
    assert!(F::seed_demo_catalogue(&store).await);
    store
        .set_stock(&book_id("book-1"), Stock::new(2).unwrap())
        .await
        .unwrap();
    assert!(!F::seed_demo_catalogue(&store).await);

    let books = store.books().await.unwrap();
    let ids: Vec<&str> = books.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["book-1", "book-2", "book-3", "book-4", "book-5"]);
    assert!(books.iter().all(|b| b.details.currency.as_str() == "EUR"));
    assert_eq!(
        books[0].details.stock.get(),
        2,
        "a second seed left sales alone"
    );
    assert_eq!(books[4].details.stock.get(), 0);

    let other_fixture = F::new().await;
    let other = other_fixture.store();
    other.put_book(&book("mine", 100, 1)).await.unwrap();
    assert!(!F::seed_demo_catalogue(&other).await);
    assert_eq!(other.books().await.unwrap().len(), 1);
}

async fn create_order_records_a_pending_order_at_the_price_the_book_has_then<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let new = new_order("book-1", "user-1", 3);
    let recorded = store.create_order(&new).await.unwrap();
    assert!(recorded.created);
    let order = recorded.order;
    assert!(order.matches(&new));
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.reason, None);
    assert!(!order.stock_held);
    assert_eq!(order.unit_price.minor_units(), 1250);
    assert_eq!(order.total_price.minor_units(), 3750);
    assert_eq!(order.currency.as_str(), "EUR");
    assert_eq!(order.created_at, order.updated_at);

    store.put_book(&book("book-1", 9999, 10)).await.unwrap();
    assert_eq!(store.order(new.id).await.unwrap(), order);
    assert_eq!(
        stock_of(&store, "book-1").await,
        10,
        "recording takes no stock"
    );
}

async fn create_order_for_an_unknown_book_is_refused<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let new = new_order("no-such-book", "user-1", 1);
    assert!(matches!(
        store.create_order(&new).await,
        Err(StorageError::UnknownBook)
    ));
    assert!(matches!(
        store.order(new.id).await,
        Err(StorageError::NotFound)
    ));
}

async fn repeating_an_order_answers_the_existing_record_whatever_its_status<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let new = new_order("book-1", "user-1", 2);
    store.create_order(&new).await.unwrap();
    let rejected = store
        .change_status(
            new.id,
            &change(OrderStatus::Pending, OrderStatus::Rejected, Some("no")),
        )
        .await
        .unwrap();

    let again = store.create_order(&new).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.order, rejected);
}

async fn another_order_under_an_existing_id_is_a_conflict_and_changes_nothing<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let new = new_order("book-1", "user-1", 2);
    let original = store.create_order(&new).await.unwrap().order;
    let other = NewOrder {
        quantity: Quantity::new(3).unwrap(),
        ..new.clone()
    };
    assert!(matches!(
        store.create_order(&other).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(store.order(new.id).await.unwrap(), original);
}

async fn an_unknown_order_is_not_found_by_every_operation<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let id = OrderId::generate();
    assert!(matches!(store.order(id).await, Err(StorageError::NotFound)));
    assert!(matches!(
        store
            .change_status(id, &change(OrderStatus::Pending, OrderStatus::Failed, None))
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store.take_stock(id).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store.return_stock(id).await,
        Err(StorageError::NotFound)
    ));
}

async fn a_status_change_happens_once_and_its_repeat_answers_the_same_order<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 1).await;
    let failed = store
        .change_status(
            order.id,
            &change(OrderStatus::Pending, OrderStatus::Failed, Some("timeout")),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, OrderStatus::Failed);
    assert_eq!(failed.reason.as_deref(), Some("timeout"));
    assert!(failed.updated_at >= order.created_at);
    assert_eq!(failed.created_at, order.created_at);

    let repeat = store
        .change_status(
            order.id,
            &change(OrderStatus::Pending, OrderStatus::Failed, Some("timeout")),
        )
        .await
        .unwrap();
    assert_eq!(repeat, failed);
}

async fn a_change_no_order_can_make_is_refused<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 1).await;
    for (from, to) in [
        (OrderStatus::Pending, OrderStatus::Pending),
        (OrderStatus::Confirmed, OrderStatus::Failed),
        (OrderStatus::Rejected, OrderStatus::Pending),
    ] {
        assert!(matches!(
            store.change_status(order.id, &change(from, to, None)).await,
            Err(StorageError::Refused(_))
        ));
    }
    assert_eq!(store.order(order.id).await.unwrap(), order);
}

async fn a_change_from_a_status_the_order_is_no_longer_in_is_a_conflict<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 1).await;
    let rejected = store
        .change_status(
            order.id,
            &change(OrderStatus::Pending, OrderStatus::Rejected, Some("r")),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .change_status(
                order.id,
                &change(OrderStatus::Pending, OrderStatus::Failed, Some("f"))
            )
            .await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(store.order(order.id).await.unwrap(), rejected);
}

async fn two_writers_cannot_both_win_a_status_change<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let id = place(&store, 1).await.id;
    store.take_stock(id).await.unwrap();
    let confirm = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .change_status(
                    id,
                    &change(OrderStatus::Pending, OrderStatus::Confirmed, None),
                )
                .await
        })
    };
    let fail = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .change_status(
                    id,
                    &change(OrderStatus::Pending, OrderStatus::Failed, Some("x")),
                )
                .await
        })
    };
    let results = [confirm.await.unwrap(), fail.await.unwrap()];
    let winners: Vec<&Order> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StorageError::Conflict(_))))
    );
    assert_eq!(store.order(id).await.unwrap().status, winners[0].status);
}

async fn an_order_is_confirmed_only_while_it_holds_its_stock_and_loses_its_reason<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 2).await;
    let confirm = change(
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        Some("not kept"),
    );
    assert!(matches!(
        store.change_status(order.id, &confirm).await,
        Err(StorageError::Conflict(_))
    ));

    store.take_stock(order.id).await.unwrap();
    let confirmed = store.change_status(order.id, &confirm).await.unwrap();
    assert_eq!(confirmed.status, OrderStatus::Confirmed);
    assert!(confirmed.stock_held);
    assert_eq!(confirmed.reason, None);
}

async fn take_stock_takes_the_quantity_once_however_often_it_is_repeated<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 3).await;
    let first = store.take_stock(order.id).await.unwrap();
    assert_eq!(first.state, AllocationState::Held);
    assert_eq!(first.quantity.get(), 3);
    assert_eq!(first.book_id.as_str(), "book-1");
    assert_eq!(first.order_id, order.id);
    assert_eq!(first.book_stock.get(), 7);
    assert!(store.order(order.id).await.unwrap().stock_held);

    assert_eq!(store.take_stock(order.id).await.unwrap(), first);
    assert_eq!(stock_of(&store, "book-1").await, 7);
}

async fn a_repeated_take_answers_the_books_stock_now<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 3).await;
    store.take_stock(order.id).await.unwrap();
    store
        .set_stock(&book_id("book-1"), Stock::new(20).unwrap())
        .await
        .unwrap();
    assert_eq!(
        store.take_stock(order.id).await.unwrap().book_stock.get(),
        20
    );
}

async fn not_enough_stock_is_recorded_as_refused_and_the_refusal_stands<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(2).await;
    let order = place(&store, 3).await;
    assert!(matches!(
        store.take_stock(order.id).await,
        Err(StorageError::OutOfStock { available: Some(2) })
    ));
    assert_eq!(stock_of(&store, "book-1").await, 2);
    assert_eq!(store.order(order.id).await.unwrap(), order);

    // A retry of the order, even once there is stock, meets the same refusal, so it
    // ends rejected as the first attempt decided.
    store
        .set_stock(&book_id("book-1"), Stock::new(3).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        store.take_stock(order.id).await,
        Err(StorageError::OutOfStock { available: Some(3) })
    ));
    assert_eq!(stock_of(&store, "book-1").await, 3);
    let closed = store.return_stock(order.id).await.unwrap();
    assert_eq!(closed.state, AllocationState::Refused);
    assert_eq!(stock_of(&store, "book-1").await, 3, "nothing to give back");
}

async fn pending_orders_created_before_an_instant_are_listed_across_users<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let old_alice = place(&store, 1).await;
    let old_bob = store
        .create_order(&new_order("book-1", "bob", 1))
        .await
        .unwrap()
        .order;
    let settled = place(&store, 1).await;
    store
        .change_status(
            settled.id,
            &change(OrderStatus::Pending, OrderStatus::Rejected, Some("r")),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cut = Utc::now();
    place(&store, 1).await;

    let mut query = OrderQuery {
        user_id: None,
        status: Some(OrderStatus::Pending),
        created_before: Some(cut),
        limit: PageLimit::new(1).unwrap(),
        cursor: None,
    };
    let first = store.orders(&query).await.unwrap();
    assert_eq!(first.items, [old_bob]);
    query.cursor = first.next_cursor;
    let second = store.orders(&query).await.unwrap();
    assert_eq!(second.items, [old_alice]);
    assert_eq!(second.next_cursor, None);
}

async fn only_a_pending_order_takes_stock<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 1).await;
    store
        .change_status(
            order.id,
            &change(OrderStatus::Pending, OrderStatus::Rejected, Some("r")),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.take_stock(order.id).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(stock_of(&store, "book-1").await, 10);
}

async fn return_stock_gives_the_stock_back_once_and_then_blocks_taking_again<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 3).await;
    store.take_stock(order.id).await.unwrap();

    let returned = store.return_stock(order.id).await.unwrap();
    assert_eq!(returned.state, AllocationState::Returned);
    assert_eq!(returned.quantity.get(), 3);
    assert_eq!(returned.book_stock.get(), 10);
    assert!(!store.order(order.id).await.unwrap().stock_held);

    assert_eq!(store.return_stock(order.id).await.unwrap(), returned);
    assert_eq!(stock_of(&store, "book-1").await, 10);
    assert!(matches!(
        store.take_stock(order.id).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(stock_of(&store, "book-1").await, 10);
}

async fn a_return_before_any_take_leaves_a_tombstone_that_a_late_take_cannot_pass<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 4).await;
    let tombstone = store.return_stock(order.id).await.unwrap();
    assert_eq!(tombstone.state, AllocationState::Returned);
    assert_eq!(tombstone.quantity.get(), 4);
    assert_eq!(tombstone.book_stock.get(), 10);

    assert!(matches!(
        store.take_stock(order.id).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(stock_of(&store, "book-1").await, 10);
    assert_eq!(store.return_stock(order.id).await.unwrap(), tombstone);
}

async fn confirmed<S: OrderStore>(store: &S, quantity: i64) -> Order {
    let order = place(store, quantity).await;
    store.take_stock(order.id).await.unwrap();
    store
        .change_status(
            order.id,
            &change(OrderStatus::Pending, OrderStatus::Confirmed, None),
        )
        .await
        .unwrap()
}

async fn cancelling_gives_the_stock_back_once_and_a_repeat_answers_the_cancelled_order<
    F: Fixture,
>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = confirmed(&store, 3).await;
    assert_eq!(stock_of(&store, "book-1").await, 7);

    let cancelled = store
        .cancel_order(order.id, Some("changed their mind"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.reason.as_deref(), Some("changed their mind"));
    assert!(!cancelled.stock_held);
    assert_eq!(stock_of(&store, "book-1").await, 10);

    let again = store.cancel_order(order.id, None).await.unwrap();
    assert_eq!(again, cancelled);
    assert_eq!(stock_of(&store, "book-1").await, 10, "given back once");
    assert_eq!(
        store.return_stock(order.id).await.unwrap().state,
        AllocationState::Returned
    );
    assert_eq!(stock_of(&store, "book-1").await, 10);
}

async fn concurrent_cancels_give_the_stock_back_once<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = confirmed(&store, 4).await;
    let store = std::sync::Arc::new(store);
    let cancels: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.cancel_order(order.id, None).await })
        })
        .collect();
    for cancel in cancels {
        assert_eq!(
            cancel.await.unwrap().unwrap().status,
            OrderStatus::Cancelled
        );
    }
    assert_eq!(stock_of(&*store, "book-1").await, 10);
}

async fn only_a_confirmed_order_can_be_cancelled<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let pending = place(&store, 1).await;
    let rejected = place(&store, 1).await;
    store
        .change_status(
            rejected.id,
            &change(OrderStatus::Pending, OrderStatus::Rejected, Some("r")),
        )
        .await
        .unwrap();
    for order in [&pending, &rejected] {
        assert!(matches!(
            store.cancel_order(order.id, None).await,
            Err(StorageError::Conflict(_))
        ));
    }
    assert!(matches!(
        store.cancel_order(OrderId::generate(), None).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(stock_of(&store, "book-1").await, 10);
}

async fn a_confirmed_order_keeps_its_stock<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let order = place(&store, 2).await;
    store.take_stock(order.id).await.unwrap();
    store
        .change_status(
            order.id,
            &change(OrderStatus::Pending, OrderStatus::Confirmed, None),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.return_stock(order.id).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(stock_of(&store, "book-1").await, 8);
    assert!(store.order(order.id).await.unwrap().stock_held);
}

async fn take_stock_never_goes_below_zero_under_concurrency<F: Fixture>() {
    const INITIAL: i64 = 10;
    const ORDERS: usize = 40;
    let (fixture, first) = store_with_book::<F>(INITIAL).await;
    let second = fixture.another_store().await;
    let mut ids = Vec::new();
    for _ in 0..ORDERS {
        ids.push(place(&first, 1).await.id);
    }

    let mut tasks = Vec::new();
    for (i, id) in ids.iter().copied().enumerate() {
        for attempt in 0..2 {
            let store = if (i + attempt) % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tasks.push(tokio::spawn(
                async move { (id, store.take_stock(id).await) },
            ));
        }
    }
    let mut outcomes: HashMap<OrderId, Vec<bool>> = HashMap::new();
    for task in tasks {
        let (id, result) = task.await.unwrap();
        match result {
            Ok(allocation) => {
                assert_eq!(allocation.state, AllocationState::Held);
                outcomes.entry(id).or_default().push(true);
            }
            Err(StorageError::OutOfStock { available }) => {
                assert!(available.is_some_and(|available| available >= 0));
                outcomes.entry(id).or_default().push(false);
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        outcomes.values().all(|o| o[0] == o[1]),
        "both takes of an order agree"
    );
    let holders = outcomes.values().filter(|o| o[0]).count();
    assert_eq!(holders as i64, INITIAL);
    assert_eq!(stock_of(&first, "book-1").await, 0);

    let mut held = 0;
    for id in &ids {
        if first.order(*id).await.unwrap().stock_held {
            held += 1;
        }
    }
    assert_eq!(held, INITIAL);
}

async fn concurrent_takes_and_returns_of_mixed_sizes_conserve_the_stock<F: Fixture>() {
    const INITIAL: i64 = 25;
    let (_fixture, store) = store_with_book::<F>(INITIAL).await;
    let mut orders = Vec::new();
    for i in 0..30 {
        orders.push(place(&store, 1 + i % 3).await);
    }
    let mut tasks = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let store = store.clone();
        let id = order.id;
        tasks.push(tokio::spawn(async move {
            let _ = store.take_stock(id).await;
            if i % 4 == 0 {
                store.return_stock(id).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut held = 0;
    for order in &orders {
        if store.order(order.id).await.unwrap().stock_held {
            held += i64::from(order.quantity.get());
        }
    }
    let stock = stock_of(&store, "book-1").await;
    assert!(stock >= 0);
    assert_eq!(held + stock, INITIAL);
}

async fn orders_lists_a_users_orders_newest_first_page_by_page<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(place(&store, 1).await);
        store
            .create_order(&new_order("book-1", "someone-else", 1))
            .await
            .unwrap();
    }
    mine.reverse();

    let first = store.orders(&query("user-1", 2, None)).await.unwrap();
    assert_eq!(first.items, mine[0..2]);
    let cursor = first.next_cursor.unwrap();
    assert!(!cursor.0.is_empty());
    assert!(
        cursor
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    let second = store
        .orders(&query("user-1", 2, Some(cursor)))
        .await
        .unwrap();
    assert_eq!(second.items, mine[2..4]);
    let third = store
        .orders(&query("user-1", 2, second.next_cursor))
        .await
        .unwrap();
    assert_eq!(third.items, mine[4..5]);
    assert_eq!(third.next_cursor, None);

    let exact = store.orders(&query("user-1", 5, None)).await.unwrap();
    assert_eq!(exact.items, mine);
    assert_eq!(exact.next_cursor, None, "no cursor to an empty page");

    let nobody = store.orders(&query("nobody", 5, None)).await.unwrap();
    assert!(nobody.items.is_empty());
    assert_eq!(nobody.next_cursor, None);
}

async fn pages_neither_skip_nor_repeat_while_new_orders_arrive<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let mut before = Vec::new();
    for _ in 0..6 {
        before.push(place(&store, 1).await);
    }
    before.reverse();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.orders(&query("user-1", 2, cursor)).await.unwrap();
        seen.extend(page.items);
        // Newer orders than anything listed so far: they belong before the first page.
        place(&store, 1).await;
        place(&store, 1).await;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, before);
}

async fn orders_can_be_listed_by_status<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let a = place(&store, 1).await;
    let b = place(&store, 1).await;
    let c = place(&store, 1).await;
    for order in [&a, &c] {
        store
            .change_status(
                order.id,
                &change(OrderStatus::Pending, OrderStatus::Rejected, Some("r")),
            )
            .await
            .unwrap();
    }
    let mut q = query("user-1", 1, None);
    q.status = Some(OrderStatus::Rejected);
    let first = store.orders(&q).await.unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].id, c.id);
    q.cursor = first.next_cursor;
    let second = store.orders(&q).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].id, a.id);
    assert_eq!(second.next_cursor, None);

    q.status = Some(OrderStatus::Pending);
    q.cursor = None;
    let pending = store.orders(&q).await.unwrap();
    assert_eq!(pending.items, [b]);
}

async fn a_cursor_this_store_did_not_issue_is_invalid<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    for bad in ["", "abc", "-3", "0", "+5", "1.5", "99999999999999999999"] {
        let result = store
            .orders(&query("user-1", 5, Some(Cursor(bad.to_owned()))))
            .await;
        assert!(
            matches!(result, Err(StorageError::InvalidCursor)),
            "{bad:?} gave {result:?}"
        );
    }
}

async fn books_are_listed_by_id_and_put_book_replaces_every_detail<F: Fixture>() {
    let fixture = F::new().await;
    let store = fixture.store();
    store.put_book(&book("b", 100, 1)).await.unwrap();
    store.put_book(&book("a", 200, 2)).await.unwrap();
    let ids: Vec<String> = store
        .books()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id.as_str().to_owned())
        .collect();
    assert_eq!(ids, ["a", "b"]);

    let replacement = BookDetails {
        title: "New title".to_owned(),
        author: "New author".to_owned(),
        price: Money::new(555).unwrap(),
        currency: Currency::parse("USD").unwrap(),
        stock: Stock::new(42).unwrap(),
    }
    .with_id(book_id("a"));
    assert_eq!(store.put_book(&replacement).await.unwrap(), replacement);
    assert_eq!(store.book(&book_id("a")).await.unwrap(), replacement);
}

async fn a_book_that_has_orders_can_still_be_replaced<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    place(&store, 1).await;
    store.put_book(&book("book-1", 1300, 3)).await.unwrap();
    assert_eq!(stock_of(&store, "book-1").await, 3);
}

async fn set_stock_sets_an_absolute_level_of_a_known_book_only<F: Fixture>() {
    let (_fixture, store) = store_with_book::<F>(10).await;
    let book = store
        .set_stock(&book_id("book-1"), Stock::new(25).unwrap())
        .await
        .unwrap();
    assert_eq!(book.details.stock.get(), 25);
    assert_eq!(book.details.price.minor_units(), 1250);
    assert!(matches!(
        store
            .set_stock(&book_id("nope"), Stock::new(1).unwrap())
            .await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        store.book(&book_id("nope")).await,
        Err(StorageError::NotFound)
    ));
}

on_every_store!(
    the_demo_catalogue_is_seeded_only_into_an_empty_store,
    create_order_records_a_pending_order_at_the_price_the_book_has_then,
    create_order_for_an_unknown_book_is_refused,
    repeating_an_order_answers_the_existing_record_whatever_its_status,
    another_order_under_an_existing_id_is_a_conflict_and_changes_nothing,
    an_unknown_order_is_not_found_by_every_operation,
    a_status_change_happens_once_and_its_repeat_answers_the_same_order,
    a_change_no_order_can_make_is_refused,
    a_change_from_a_status_the_order_is_no_longer_in_is_a_conflict,
    two_writers_cannot_both_win_a_status_change,
    an_order_is_confirmed_only_while_it_holds_its_stock_and_loses_its_reason,
    take_stock_takes_the_quantity_once_however_often_it_is_repeated,
    a_repeated_take_answers_the_books_stock_now,
    not_enough_stock_is_recorded_as_refused_and_the_refusal_stands,
    pending_orders_created_before_an_instant_are_listed_across_users,
    only_a_pending_order_takes_stock,
    return_stock_gives_the_stock_back_once_and_then_blocks_taking_again,
    a_return_before_any_take_leaves_a_tombstone_that_a_late_take_cannot_pass,
    a_confirmed_order_keeps_its_stock,
    cancelling_gives_the_stock_back_once_and_a_repeat_answers_the_cancelled_order,
    concurrent_cancels_give_the_stock_back_once,
    only_a_confirmed_order_can_be_cancelled,
    take_stock_never_goes_below_zero_under_concurrency,
    concurrent_takes_and_returns_of_mixed_sizes_conserve_the_stock,
    orders_lists_a_users_orders_newest_first_page_by_page,
    pages_neither_skip_nor_repeat_while_new_orders_arrive,
    orders_can_be_listed_by_status,
    a_cursor_this_store_did_not_issue_is_invalid,
    books_are_listed_by_id_and_put_book_replaces_every_detail,
    a_book_that_has_orders_can_still_be_replaced,
    set_stock_sets_an_absolute_level_of_a_known_book_only,
);

/// What only the PostgreSQL store has to show: several replicas on one database, the schema
/// rules kept by the server itself, and an outage.
mod postgres_only {
    use super::*;

    async fn raw_client(config: &PostgresConfig) -> tokio_postgres::Client {
        let (client, connection) = config
            .url
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_at_once_migrate_the_database_once_and_all_serve_it() {
        let config = PgServer::shared().create_database().await;
        let mut starting = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let config = config.clone();
            starting.spawn(async move { PostgresStore::connect(&config).await });
        }
        let mut stores = Vec::new();
        while let Some(started) = starting.join_next().await {
            stores.push(started.unwrap().expect("every replica starts"));
        }
        stores[0].put_book(&book("book-1", 1250, 3)).await.unwrap();
        for store in &stores {
            assert_eq!(stock_of(store, "book-1").await, 3);
        }
        let versions: Vec<i32> = raw_client(&config)
            .await
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, [1, 2], "each step recorded once");
    }

    #[tokio::test]
    async fn the_database_itself_refuses_negative_stock_and_a_second_allocation() {
        let (fixture, store) = store_with_book::<Postgres>(1).await;
        let order = place(&store, 1).await;
        store.take_stock(order.id).await.unwrap();
        let raw = raw_client(&fixture.config).await;
        let err = raw
            .execute(
                "UPDATE books SET stock = stock - 2 WHERE id = 'book-1'",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        );
        let err = raw
            .execute(
                "INSERT INTO allocations (order_id, book_id, quantity, state)
                 VALUES ($1, 'book-1', 1, 'held')",
                &[&order.id.0],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        );
        let err = raw
            .execute(
                "UPDATE orders SET status = 'confirmed', stock_held = FALSE WHERE id = $1",
                &[&order.id.0],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        );
    }

    #[tokio::test]
    async fn a_database_from_a_newer_schema_is_refused_rather_than_misread() {
        let fixture = Postgres::new().await;
        raw_client(&fixture.config)
            .await
            .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
            .await
            .unwrap();
        assert!(matches!(
            PostgresStore::connect(&fixture.config).await,
            Err(StorageError::Failed(_))
        ));
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_at_start_is_unavailable() {
        let port = port::free();
        let config =
            PostgresConfig::parse(&format!("postgres://postgres@127.0.0.1:{port}/none")).unwrap();
        assert!(matches!(
            PostgresStore::connect(&config).await,
            Err(StorageError::Unavailable(_))
        ));
    }

    /// The server goes away under a running store and comes back: calls fail as
    /// `Unavailable` (retryable, a 503 over HTTP) meanwhile, and succeed again afterwards
    /// without a restart of the store.
    #[tokio::test]
    async fn a_lost_server_makes_calls_unavailable_and_the_store_recovers_when_it_returns() {
        let server = PgServer::start();
        let config = server.create_database().await;
        let store = PostgresStore::connect(&config).await.unwrap();
        store.put_book(&book("book-1", 1250, 5)).await.unwrap();
        let order = place(&store, 2).await;

        server.stop();
        for outcome in [
            store.ping().await,
            store.book(&book_id("book-1")).await.map(drop),
            store.take_stock(order.id).await.map(drop),
        ] {
            assert!(
                matches!(outcome, Err(StorageError::Unavailable(_))),
                "{outcome:?}"
            );
        }

        server.restart();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.ping().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store did not recover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            store.take_stock(order.id).await.unwrap().book_stock.get(),
            3
        );
    }
}
