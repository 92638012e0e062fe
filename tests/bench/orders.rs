//! Placing orders, measured: `cargo bench --bench orders`.
//!
//! Runs the same load against the Order Processor on each storage adapter, in one process and
//! one run, so that the figures compare side by side: the embedded SQLite store, and the
//! reference Storage Service over HTTP through the generated client. Prints the median and
//! tail latency of `POST /orders` and the throughput, at one client and at many.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use order_processor::{
    domain::{
        model::{Book, BookDetails, BookId, Currency, Money, Stock},
        storage::Storage,
    },
    http::{server::Running, storage_api::spawn_reference_storage},
    startup::Application,
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        sqlite::SqliteStore,
    },
};

const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
const WARM_UP: usize = 200;
const ORDERS: usize = 2_000;
const CONCURRENCY: [usize; 2] = [1, 16];

struct Figures {
    median: Duration,
    p90: Duration,
    p99: Duration,
    per_second: f64,
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("bench-orders-{}", uuid::Uuid::new_v4()));
    println!("POST /orders, {ORDERS} orders a run after {WARM_UP} to warm up, release build");
    println!(
        "{:<34} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "storage", "clients", "median", "p90", "p99", "orders/s"
    );
    for concurrency in CONCURRENCY {
        for remote in [false, true] {
            let store = SqliteStore::open(&dir.join(format!("{remote}-{concurrency}.db")))
                .expect("open the store");
            add_book(&store).await;
            let (order_processor, _storage) = if remote {
                let storage = spawn_reference_storage(Arc::new(store), LOOPBACK)
                    .await
                    .expect("start the storage");
                let client = HttpStorage::new(&storage.url(), HttpStorageConfig::default())
                    .expect("build the client");
                (spawn(client).await, Some(storage))
            } else {
                (spawn(store).await, None)
            };
            let address = order_processor.url();
            let name = if remote {
                "reference Storage Service (HTTP)"
            } else {
                "embedded SQLite store"
            };
            run(&address, WARM_UP, concurrency).await;
            let figures = run(&address, ORDERS, concurrency).await;
            println!(
                "{name:<34} {concurrency:>7} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.0}",
                figures.median, figures.p90, figures.p99, figures.per_second
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn add_book(store: &SqliteStore) {
    let book = Book {
        id: BookId::parse("bench").expect("a valid id"),
        details: BookDetails {
            title: "Benchmarks".to_owned(),
            author: "An Author".to_owned(),
            price: Money::price(1299).expect("a valid price"),
            currency: Currency::parse("EUR").expect("a valid currency"),
            stock: Stock::new(Stock::MAX).expect("a valid stock"),
        },
    };
    store.put_book(&book).await.expect("put the book");
}

async fn spawn<S: Storage>(storage: S) -> Running {
    Application::build(storage, LOOPBACK)
        .await
        .expect("bind")
        .spawn()
}

/// Places `orders` orders from `concurrency` clients, each waiting for its answer before the
/// next; every answer must be 201.
async fn run(address: &str, orders: usize, concurrency: usize) -> Figures {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let url = format!("{address}/orders");
        let share = orders / concurrency + usize::from(worker < orders % concurrency);
        clients.spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for n in 0..share {
                let body = serde_json::json!({"bookId": "bench", "quantity": 1, "userId": format!("user-{worker}-{n}")});
                let sent = Instant::now();
                let response = client.post(&url).json(&body).send().await.expect("send");
                assert_eq!(response.status().as_u16(), 201);
                response.bytes().await.expect("read the answer");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies: Vec<Duration> = clients.join_all().await.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile).round() as usize];
    Figures {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
    }
}
