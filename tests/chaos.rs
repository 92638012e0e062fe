//! Faults across two replicas: one reference Storage Service and two Order Processor
//! processes, each reaching the storage through its own fault proxy. Concurrent clients buy
//! books with little stock, most with an idempotency key that they retry on either instance;
//! one instance is killed with SIGKILL half-way and started again. When the faults stop and
//! recovery has had its period, every invariant of the service must hold: stock never below
//! zero, confirmed quantities equal to the stock taken, every 201 a confirmed order and every
//! 409 a rejected one, one order per (user, key), no order pending, no 500, every error a
//! Problem.
//!
//! `CHAOS_DURATION` (default 20s) sets how long the faults last and `CHAOS_SEED` (default
//! 20261125) seeds every random choice of the proxies and clients; `cargo xtask soak` runs it
//! longer.

mod support {
    pub mod fs;
    pub mod net;
    pub mod process;
}

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use support::{net::LOOPBACK, process::ChildService};

const ORDER_PROCESSOR: &str = env!("CARGO_BIN_EXE_order-processor");
const STORAGE_SERVICE: &str = env!("CARGO_BIN_EXE_storage-service");

/// Books with little stock, so that the stock runs out under the run and refusals are
/// exercised as much as sales.
const BOOKS: [(&str, i64); 6] = [
    ("chaos-1", 150),
    ("chaos-2", 120),
    ("chaos-3", 90),
    ("chaos-4", 60),
    ("chaos-5", 30),
    ("chaos-6", 10),
];
const CLIENTS: usize = 12;
/// Recovery as the instances run it here: short, so that the test ends soon.
const RECOVERY_AFTER: Duration = Duration::from_secs(2);
const RECOVERY_PERIOD: Duration = Duration::from_millis(500);
/// Longer than the storage client's timeout of one attempt (2 s), so that a delayed
/// request reaches the storage after the Order Processor gave up on it.
const PROXY_DELAY: Duration = Duration::from_millis(2_500);
/// A client's patience for one answer, shorter than the worst case of the service, so
/// that clients also retry while their first request is still at work.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(4);

struct Settings {
    duration: Duration,
    seed: u64,
}

impl Settings {
    fn from_env() -> Self {
        let duration = std::env::var("CHAOS_DURATION").map_or(Duration::from_secs(20), |v| {
            humantime::parse_duration(&v).expect("CHAOS_DURATION is a duration such as 20s")
        });
        let seed = std::env::var("CHAOS_SEED").map_or(20_261_125, |v| {
            v.parse().expect("CHAOS_SEED is an unsigned integer")
        });
        Self { duration, seed }
    }
}

// ---------------------------------------------------------------------------------------
// Processes

fn order_processor(storage_url: &str) -> ChildService {
    ChildService::start(
        ORDER_PROCESSOR,
        &[
            ("STORAGE_SERVICE_URL", storage_url),
            ("RECOVERY_AFTER", "2s"),
            ("RECOVERY_PERIOD", "500ms"),
        ],
    )
}

/// The orders `instance` has logged recovering since it was last asked: the log lines are
/// read once.
fn recovered(instance: &ChildService) -> usize {
    instance
        .lines
        .try_iter()
        .filter(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|line| line["message"] == "recovered a pending order")
        })
        .count()
}

// ---------------------------------------------------------------------------------------
// The fault proxy

/// What a proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// Closes the connection without forwarding or answering.
    Drop,
    /// Holds the request past the client's timeout, then forwards it.
    Delay,
    /// Answers 502 or 503 itself, without forwarding.
    ServerError,
    /// Forwards the request, lets the storage commit it, and cuts the answer.
    CutAnswer,
}

impl Fault {
    /// Out of 1,000 requests: 80 dropped, 15 delayed, 80 failed, 80 cut. Often enough that
    /// some orders exhaust the service's own retries and reach their clients as 503s.
    fn pick(rng: &mut fastrand::Rng) -> Option<Self> {
        match rng.u32(0..1000) {
            0..80 => Some(Self::Drop),
            80..95 => Some(Self::Delay),
            95..175 => Some(Self::ServerError),
            175..255 => Some(Self::CutAnswer),
            _ => None,
        }
    }
}

/// A proxy in front of the Storage Service that injects faults while `active`.
struct FaultProxy {
    url: String,
    active: Arc<AtomicBool>,
    injected: Arc<Mutex<BTreeMap<Fault, u64>>>,
}

/// Returned by the proxy's service to make hyper close the connection unanswered.
#[derive(Debug)]
struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection cut by the fault proxy")
    }
}

impl std::error::Error for Cut {}

impl FaultProxy {
    async fn start(upstream: String, seed: u64) -> Self {
        let listener = tokio::net::TcpListener::bind(LOOPBACK)
            .await
            .expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let active = Arc::new(AtomicBool::new(true));
        let injected = Arc::new(Mutex::new(BTreeMap::new()));
        let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
        let client = reqwest::Client::new();
        let (active_in, injected_in) = (active.clone(), injected.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, client, rng) = (upstream.clone(), client.clone(), rng.clone());
                let (active, injected) = (active_in.clone(), injected_in.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let fault = if active.load(Ordering::Relaxed) {
                            Fault::pick(&mut rng.lock().unwrap())
                        } else {
                            None
                        };
                        if let Some(fault) = fault {
                            *injected.lock().unwrap().entry(fault).or_default() += 1;
                        }
                        forward(request, fault, upstream.clone(), client.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            active,
            injected,
        }
    }
}

async fn forward(
    request: Request<Incoming>,
    fault: Option<Fault>,
    upstream: String,
    client: reqwest::Client,
) -> Result<Response<Full<Bytes>>, Cut> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Cut)?.to_bytes();
    match fault {
        Some(Fault::Drop) => return Err(Cut),
        Some(Fault::ServerError) => {
            let status = if body.len() % 2 == 0 { 502 } else { 503 };
            return Ok(Response::builder()
                .status(status)
                .header("content-type", "text/html")
                .body(Full::new(Bytes::from_static(
                    b"<h1>upstream unavailable</h1>",
                )))
                .expect("a response"));
        }
        Some(Fault::Delay) => tokio::time::sleep(PROXY_DELAY).await,
        Some(Fault::CutAnswer) | None => {}
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let answer = client
        .request(parts.method, format!("{upstream}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|_| Cut)?;
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.map_err(|_| Cut)?;
    if fault == Some(Fault::CutAnswer) {
        return Err(Cut);
    }
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    Ok(response.body(Full::new(bytes)).expect("a response"))
}

// ---------------------------------------------------------------------------------------
// Clients

/// One purchase and everything its client saw.
#[derive(Debug)]
struct Purchase {
    user: String,
    key: Option<String>,
    book: &'static str,
    /// The final answer: 201 or 409 with the order id it names.
    outcome: Option<(u16, String)>,
}

#[derive(Default)]
struct Tally {
    purchases: Mutex<Vec<Purchase>>,
    attempts: AtomicU64,
    retries: AtomicU64,
    unavailable: AtomicU64,
    transport_errors: AtomicU64,
    /// Answers that break the contract: a 500, an unexpected status, an error that is not
    /// a Problem.
    violations: Mutex<Vec<String>>,
}

impl Tally {
    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

fn is_problem(body: &Value, status: u16) -> bool {
    body["type"].as_str().is_some_and(|t| !t.is_empty())
        && body["title"].as_str().is_some_and(|t| !t.is_empty())
        && body["status"] == status
}

/// Sends one attempt; answers the final outcome, or `None` when the client should retry.
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    key: Option<&str>,
    tally: &Tally,
) -> Option<(u16, String)> {
    tally.attempts.fetch_add(1, Ordering::Relaxed);
    let mut request = client.post(format!("{url}/orders")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) => {
            tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(text) => text,
        Err(_) => {
            tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 && !is_problem(&answer, status) {
        tally.violation(format!("{status} without a Problem body: {text}"));
    }
    match status {
        201 => Some((201, answer["id"].as_str().unwrap_or_default().to_owned())),
        409 => Some((
            409,
            answer["orderId"].as_str().unwrap_or_default().to_owned(),
        )),
        503 => {
            tally.unavailable.fetch_add(1, Ordering::Relaxed);
            None
        }
        other => {
            tally.violation(format!("POST /orders {body} answered {other}: {text}"));
            Some((other, String::new()))
        }
    }
}

/// Buys until `stop`; a keyed purchase is retried with the same key and body, on either
/// instance, until it has a final answer, even after `stop`.
async fn buyer(
    number: usize,
    seed: u64,
    instances: Arc<RwLock<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(number as u64 * 7_919));
    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let mut purchase_number = 0;
    while !stop.load(Ordering::Relaxed) {
        purchase_number += 1;
        let (book, _) = BOOKS[rng.usize(0..BOOKS.len())];
        let keyed = rng.u32(0..10) < 7;
        // Keyed and keyless purchases have users of their own, so that the orders of each
        // kind can be counted apart.
        let user = if keyed {
            format!("keyed-{number}-{}", purchase_number % 4)
        } else {
            format!("plain-{number}")
        };
        let key = keyed.then(|| format!("c{number}-p{purchase_number}"));
        let body = json!({ "bookId": book, "quantity": rng.i64(1..=3), "userId": user });
        let mut tries = 0;
        let outcome = loop {
            let url = {
                let instances = instances.read().unwrap();
                instances[rng.usize(0..instances.len())].clone()
            };
            let outcome = attempt(&client, &url, &body, key.as_deref(), &tally).await;
            if outcome.is_some() || key.is_none() {
                break outcome;
            }
            tries += 1;
            tally.retries.fetch_add(1, Ordering::Relaxed);
            assert!(tries < 500, "purchase {key:?} never got a final answer");
            tokio::time::sleep(Duration::from_millis(rng.u64(50..300))).await;
        };
        tally.purchases.lock().unwrap().push(Purchase {
            user,
            key,
            book,
            outcome,
        });
    }
}

// ---------------------------------------------------------------------------------------
// The storage as it ends

async fn all_orders(client: &reqwest::Client, storage: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{storage}/orders?limit=100");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("list orders")
            .json()
            .await
            .expect("a page");
        orders.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return orders,
        }
    }
}

async fn stock(client: &reqwest::Client, storage: &str) -> HashMap<String, i64> {
    let books: Value = client
        .get(format!("{storage}/books"))
        .send()
        .await
        .expect("list books")
        .json()
        .await
        .expect("the books");
    books["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|book| {
            (
                book["id"].as_str().unwrap_or_default().to_owned(),
                book["quantity"].as_i64().unwrap_or(i64::MIN),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_reaches_one_end_through_faults_and_a_killed_replica() {
    let settings = Settings::from_env();
    let started = Instant::now();
    let storage = ChildService::start(STORAGE_SERVICE, &[]);
    let direct = reqwest::Client::new();
    for (id, stock) in BOOKS {
        let response = direct
            .put(format!("{}/books/{id}", storage.url()))
            .json(&json!({
                "title": format!("Title of {id}"), "author": "An Author",
                "price": 1299, "currency": "EUR", "quantity": stock
            }))
            .send()
            .await
            .expect("put a book");
        assert_eq!(response.status().as_u16(), 200);
    }
    let proxies = [
        FaultProxy::start(storage.url().to_owned(), settings.seed).await,
        FaultProxy::start(storage.url().to_owned(), settings.seed.wrapping_add(1)).await,
    ];
    let mut instances = [
        order_processor(&proxies[0].url),
        order_processor(&proxies[1].url),
    ];
    let urls = Arc::new(RwLock::new(
        instances
            .iter()
            .map(|p| p.url().to_owned())
            .collect::<Vec<_>>(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let buyers: Vec<_> = (0..CLIENTS)
        .map(|number| {
            tokio::spawn(buyer(
                number,
                settings.seed,
                urls.clone(),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(settings.duration / 2).await;
    let killed = &mut instances[0];
    killed.kill();
    let mut recoveries = recovered(killed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = order_processor(&proxies[0].url);
    urls.write().unwrap()[0] = restarted.url().to_owned();
    instances[0] = restarted;
    tokio::time::sleep(settings.duration / 2).await;

    stop.store(true, Ordering::Relaxed);
    for proxy in &proxies {
        proxy.active.store(false, Ordering::Relaxed);
    }
    for buyer in buyers {
        buyer.await.expect("a buyer ran to its end");
    }

    // Recovery settles the orders that lost their request: wait for it, within bounds.
    let deadline = Instant::now() + RECOVERY_AFTER + RECOVERY_PERIOD * 4 + Duration::from_secs(20);
    let orders = loop {
        let orders = all_orders(&direct, storage.url()).await;
        let pending = orders.iter().filter(|o| o["status"] == "pending").count();
        if pending == 0 || Instant::now() > deadline {
            break orders;
        }
        tokio::time::sleep(RECOVERY_PERIOD).await;
    };
    recoveries += instances.iter().map(recovered).sum::<usize>();
    let final_stock = stock(&direct, storage.url()).await;

    // Check every invariant, collecting each violation with the orders involved.
    let mut violations = std::mem::take(&mut *tally.violations.lock().unwrap());
    let by_id: HashMap<&str, &Value> = orders
        .iter()
        .map(|order| (order["id"].as_str().unwrap_or_default(), order))
        .collect();
    for order in orders.iter().filter(|o| o["status"] == "pending") {
        violations.push(format!("order {} is still pending", order["id"]));
    }
    for (book, initial) in BOOKS {
        let now = final_stock.get(book).copied().unwrap_or(i64::MIN);
        if now < 0 {
            violations.push(format!("book {book} has {now} in stock"));
        }
        let confirmed: i64 = orders
            .iter()
            .filter(|o| o["bookId"] == book && o["status"] == "confirmed")
            .map(|o| o["quantity"].as_i64().unwrap_or_default())
            .sum();
        if confirmed != initial - now {
            violations.push(format!(
                "book {book}: confirmed {confirmed} copies, but the stock went from {initial} to {now}"
            ));
        }
    }
    let purchases = std::mem::take(&mut *tally.purchases.lock().unwrap());
    let mut keyed_ids: HashMap<(&str, &str), &str> = HashMap::new();
    for purchase in &purchases {
        let Some((status, id)) = &purchase.outcome else {
            continue;
        };
        let expected = match status {
            201 => "confirmed",
            409 => "rejected",
            _ => continue,
        };
        match by_id.get(id.as_str()) {
            Some(order) if order["status"] == expected && order["bookId"] == purchase.book => {}
            Some(order) => violations.push(format!(
                "{status} for {:?} names order {id}, which is {} for {}",
                purchase.key, order["status"], order["bookId"]
            )),
            None => violations.push(format!("{status} names order {id}, which does not exist")),
        }
        if let Some(key) = &purchase.key
            && let Some(other) = keyed_ids.insert((purchase.user.as_str(), key.as_str()), id)
        {
            violations.push(format!(
                "key {key} of {} named orders {other} and {id}",
                purchase.user
            ));
        }
    }
    let keyed_purchases = purchases.iter().filter(|p| p.key.is_some()).count();
    let keyed_orders: Vec<&Value> = orders
        .iter()
        .filter(|o| {
            o["userId"]
                .as_str()
                .is_some_and(|u| u.starts_with("keyed-"))
        })
        .collect();
    if keyed_orders.len() != keyed_purchases {
        let answered: std::collections::HashSet<&str> = keyed_ids.values().copied().collect();
        let strays: Vec<&Value> = keyed_orders
            .iter()
            .filter(|o| !answered.contains(o["id"].as_str().unwrap_or_default()))
            .map(|o| &o["id"])
            .collect();
        violations.push(format!(
            "{keyed_purchases} keyed purchases left {} orders; not named by any answer: {strays:?}",
            keyed_orders.len()
        ));
    }
    let plain_purchases = purchases.len() - keyed_purchases;
    let plain_orders = orders
        .iter()
        .filter(|o| {
            o["userId"]
                .as_str()
                .is_some_and(|u| u.starts_with("plain-"))
        })
        .count();
    if plain_orders > plain_purchases {
        violations.push(format!(
            "{plain_purchases} purchases without a key left {plain_orders} orders"
        ));
    }

    let count = |status: u16| {
        purchases
            .iter()
            .filter(|p| p.outcome.as_ref().is_some_and(|(s, _)| *s == status))
            .count()
    };
    let mut faults: BTreeMap<Fault, u64> = BTreeMap::new();
    for proxy in &proxies {
        for (fault, n) in proxy.injected.lock().unwrap().iter() {
            *faults.entry(*fault).or_default() += n;
        }
    }
    let statuses = |status: &str| orders.iter().filter(|o| o["status"] == status).count();
    println!(
        "chaos: seed {} for {:?}, {:.1} s in all\n\
         purchases: {} ({keyed_purchases} with a key, {plain_purchases} without): {} answered 201, {} answered 409\n\
         attempts: {}, retries: {}, 503 answers: {}, timeouts and cut connections: {}\n\
         faults injected: {faults:?}\n\
         instances killed and restarted: 1; orders recovered: {recoveries}\n\
         orders in the storage: {} ({} confirmed, {} rejected, {} failed, {} pending)\n\
         stock left: {:?}\n\
         violations: {}",
        settings.seed,
        settings.duration,
        started.elapsed().as_secs_f64(),
        purchases.len(),
        count(201),
        count(409),
        tally.attempts.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
        tally.unavailable.load(Ordering::Relaxed),
        tally.transport_errors.load(Ordering::Relaxed),
        orders.len(),
        statuses("confirmed"),
        statuses("rejected"),
        statuses("failed"),
        statuses("pending"),
        BOOKS.map(|(book, _)| (book, final_stock.get(book).copied().unwrap_or_default())),
        violations.len(),
    );
    assert!(
        violations.is_empty(),
        "invariants broken:\n{}",
        violations.join("\n")
    );
    assert!(
        faults.values().sum::<u64>() > 0 && count(201) > 0 && count(409) > 0,
        "the run must sell, refuse and meet faults to show anything"
    );
}
