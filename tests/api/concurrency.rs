//! Many parallel orders at a book with little stock: the stock never goes below zero, and
//! the confirmed quantities add up exactly to what was taken.

use serde_json::Value;

use crate::helpers::{Backend, on_both_backends, order, spawn_app};

const INITIAL_STOCK: i64 = 25;
const ORDERS: usize = 60;

async fn parallel_orders_never_oversell_and_confirmed_quantities_add_up(backend: Backend) {
    let app = spawn_app(backend).await;
    app.add_book("scarce", INITIAL_STOCK).await;

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..ORDERS {
        let client = app.client.clone();
        let url = format!("{}/orders", app.address);
        let quantity = (n % 3 + 1) as i64;
        tasks.spawn(async move {
            let response = client
                .post(url)
                .json(&order("scarce", quantity, &format!("user-{n}")))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, quantity, response.json::<Value>().await.unwrap())
        });
    }
    let mut confirmed = 0;
    let mut rejected_ids = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (status, quantity, body) = result.unwrap();
        match status {
            201 => confirmed += quantity,
            409 => rejected_ids.push(body["orderId"].as_str().unwrap().to_owned()),
            other => panic!("unexpected status {other}: {body}"),
        }
    }

    let remaining = app.stock_of("scarce").await;
    assert!(remaining >= 0);
    assert_eq!(
        confirmed + remaining,
        INITIAL_STOCK,
        "confirmed {confirmed}, remaining {remaining}"
    );
    assert!(!rejected_ids.is_empty(), "the stock was meant to run out");
    // With a bit of stock left, only orders larger than it could be refused.
    assert!(
        remaining < 3,
        "{remaining} copies left while orders were refused"
    );
    for id in rejected_ids {
        let recorded: Value = app
            .get(&format!("/orders/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(recorded["status"], "rejected");
    }
}

on_both_backends!(parallel_orders_never_oversell_and_confirmed_quantities_add_up);
