//! Scale-out on PostgreSQL: three reference Storage Service replicas, each with its own store
//! and pool, on one database, behind a round-robin balancer as a Kubernetes Service spreads
//! calls, and two Order Processors that use it. Buyers race for little stock through both
//! processors, so that consecutive calls of one order land on different replicas: the
//! database alone keeps the stock right.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use order_processor::{
    domain::{
        model::{OrderId, OrderQuery, OrderStatus, PageLimit},
        storage::{Catalogue, OrderStore},
    },
    http::{
        server::{Running, Server},
        storage_api::spawn_reference_storage,
    },
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        postgres::PostgresStore,
    },
};
use poem::{Body, EndpointExt, Request, Response, handler, web::Data};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    helpers::{order, spawn_order_processor},
    support::{
        catalogue::{book, stock_of},
        net::LOOPBACK,
        postgres::PgServer,
    },
};

const REPLICAS: usize = 3;
const INITIAL_STOCK: i64 = 12;
const BUYERS: usize = 40;

/// Sends each request to the next replica in turn, and counts what each one got.
#[derive(Clone)]
struct RoundRobin {
    replicas: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    served: Arc<Vec<AtomicUsize>>,
    client: reqwest::Client,
}

#[handler]
async fn forward(request: &Request, body: Body, Data(balancer): Data<&RoundRobin>) -> Response {
    let replica = balancer.next.fetch_add(1, Ordering::Relaxed) % balancer.replicas.len();
    balancer.served[replica].fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let upstream = balancer
        .client
        .request(
            request.method().clone(),
            format!("{}{path}", balancer.replicas[replica]),
        )
        .header("content-type", "application/json")
        .body(body.into_vec().await.unwrap())
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        response = response.header(name, value);
    }
    response.body(upstream.bytes().await.unwrap())
}

struct Outcome {
    status: u16,
    order_id: String,
    quantity: i64,
}

async fn place(
    client: &reqwest::Client,
    processor: &str,
    body: &Value,
    key: Option<&str>,
) -> Outcome {
    let mut request = client.post(format!("{processor}/orders")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    let order_id = match status {
        201 => answer["id"].as_str(),
        409 => answer["orderId"].as_str(),
        other => panic!("unexpected status {other}: {answer}"),
    }
    .unwrap()
    .to_owned();
    Outcome {
        status,
        order_id,
        quantity: body["quantity"].as_i64().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_storage_replicas_on_one_database_and_two_order_processors_never_oversell() {
    let database = PgServer::shared().create_database().await;
    let mut replicas: Vec<Running> = Vec::new();
    for _ in 0..REPLICAS {
        let store = PostgresStore::connect(&database).await.unwrap();
        replicas.push(
            spawn_reference_storage(Arc::new(store), LOOPBACK)
                .await
                .unwrap(),
        );
    }
    let check = PostgresStore::connect(&database).await.unwrap();
    check
        .put_book(&book("scarce", 1299, INITIAL_STOCK))
        .await
        .unwrap();

    let balancer = RoundRobin {
        replicas: Arc::new(replicas.iter().map(Running::url).collect()),
        next: Arc::new(AtomicUsize::new(0)),
        served: Arc::new((0..REPLICAS).map(|_| AtomicUsize::new(0)).collect()),
        client: reqwest::Client::new(),
    };
    let balanced = Server::bind(LOOPBACK)
        .await
        .unwrap()
        .spawn(forward.data(balancer.clone()));
    let mut processors = Vec::new();
    for _ in 0..2 {
        let storage = HttpStorage::new(&balanced.url(), HttpStorageConfig::default()).unwrap();
        processors.push(spawn_order_processor(storage).await);
    }
    let urls: Vec<String> = processors.iter().map(Running::url).collect();

    // Every other buyer sends a key and repeats the purchase through the other processor:
    // both answers must be the one outcome of one order.
    let client = reqwest::Client::new();
    let mut buyers = tokio::task::JoinSet::new();
    for n in 0..BUYERS {
        let client = client.clone();
        let first = urls[n % 2].clone();
        let second = urls[(n + 1) % 2].clone();
        buyers.spawn(async move {
            let body = order("scarce", (n % 2 + 1) as i64, &format!("user-{n}"));
            if n % 2 == 0 {
                return vec![place(&client, &first, &body, None).await];
            }
            let key = Uuid::new_v4().to_string();
            let (a, b) = tokio::join!(
                place(&client, &first, &body, Some(&key)),
                place(&client, &second, &body, Some(&key)),
            );
            assert_eq!(a.status, b.status, "one key, one outcome");
            assert_eq!(a.order_id, b.order_id, "one key, one order");
            vec![a]
        });
    }
    let mut answered: HashMap<String, Outcome> = HashMap::new();
    while let Some(outcomes) = buyers.join_next().await {
        for outcome in outcomes.unwrap() {
            answered.insert(outcome.order_id.clone(), outcome);
        }
    }

    let remaining = stock_of(&check, "scarce").await;
    let confirmed: i64 = answered
        .values()
        .filter(|outcome| outcome.status == 201)
        .map(|outcome| outcome.quantity)
        .sum();
    assert!(remaining >= 0);
    assert_eq!(
        confirmed + remaining,
        INITIAL_STOCK,
        "no oversell, and the stock is conserved"
    );
    assert!(
        answered.values().any(|outcome| outcome.status == 409),
        "the stock was meant to run out"
    );
    for (id, outcome) in &answered {
        let stored = check
            .order(OrderId(Uuid::parse_str(id).unwrap()))
            .await
            .unwrap();
        match outcome.status {
            201 => assert!(
                stored.status == OrderStatus::Confirmed && stored.stock_held,
                "{stored:?}"
            ),
            _ => assert!(
                stored.status == OrderStatus::Rejected && !stored.stock_held,
                "{stored:?}"
            ),
        }
    }
    let all = check
        .orders(&OrderQuery {
            user_id: None,
            status: None,
            created_before: None,
            limit: PageLimit::MAX_PAGE,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), answered.len(), "one order per purchase");
    for (replica, served) in balancer.served.iter().enumerate() {
        assert!(
            served.load(Ordering::Relaxed) > 0,
            "replica {replica} served nothing"
        );
    }
}
