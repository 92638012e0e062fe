//! How the Books Service places an order for `POST /books/purchase`: one idempotency key per
//! purchase, so that retrying after a timeout, a 429 or a 503 can never create a second order,
//! and one outcome per documented refusal. A service that checks access needs a bearer token
//! with `orders:write`, and `orders:any-user` to order for its buyers: give it in
//! `ORDER_PROCESSOR_TOKEN` (left out, requests go without one, as an open service takes them).
//!
//! ```text
//! ORDER_PROCESSOR_URL=http://localhost:8082 ORDER_PROCESSOR_TOKEN=eyJ... \
//!     cargo run -p order-processor-client --example books_service
//! ```

use std::{process::ExitCode, time::Duration};

use order_processor_client::{IdempotencyKey, OrderError, OrderProcessor, Purchase};

/// How long the Books Service lets one purchase take, retries included.
const PURCHASE_DEADLINE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(base_url) = std::env::var("ORDER_PROCESSOR_URL") else {
        eprintln!("set ORDER_PROCESSOR_URL (e.g. http://localhost:8082) to place an order");
        return ExitCode::SUCCESS;
    };
    match purchase(&base_url, "book-1", 1, "user-17").await {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("the purchase failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn purchase(
    base_url: &str,
    book_id: &str,
    quantity: u32,
    user_id: &str,
) -> Result<String, OrderError> {
    let orders = OrderProcessor::new(base_url)?;
    // Trimmed: a token read from a file or a secret often ends with a newline.
    let orders = match std::env::var("ORDER_PROCESSOR_TOKEN") {
        Ok(token) => orders.with_bearer_token(token.trim())?,
        Err(_) => orders,
    };
    let purchase = Purchase::new(book_id, quantity, user_id)?;
    // Derived from the purchase, not drawn per attempt: a retry must send the same key.
    let key = IdempotencyKey::new(format!("books-purchase-{}", uuid::Uuid::new_v4()))?;
    match orders
        .place_with_retries(&purchase, &key, PURCHASE_DEADLINE)
        .await
    {
        Ok(order) => Ok(format!(
            "order {} confirmed: {} cents",
            order.id, *order.total_price
        )),
        Err(OrderError::OutOfStock { order_id, detail }) => Ok(format!(
            "out of stock, order {} rejected: {detail}",
            order_id.map_or_else(|| "?".to_owned(), |id| id.to_string())
        )),
        Err(OrderError::UnknownBook { .. }) => Ok(format!("no book {book_id} in the catalogue")),
        Err(err) => Err(err),
    }
}
