//! How the Books Service places an order for `POST /books/purchase`: one idempotency key per
//! purchase, so that retrying after a timeout or a 503 can never create a second order, and
//! one outcome per documented answer of `create_order`.
//!
//! ```text
//! ORDER_PROCESSOR_URL=http://localhost:8082 cargo run -p order-processor-client --example books_service
//! ```
//!
//! `sdk/README.md` shows the same code.

use std::{num::NonZeroU32, process::ExitCode, time::Duration};

use order_processor_client::{
    Client, Error,
    types::{CreateOrderRequest, Order, Problem},
};

/// Attempts per purchase, the first one included.
const ATTEMPTS: u32 = 3;

/// The wait before a retry when the service did not say how long to wait.
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What the Books Service makes of one purchase.
#[derive(Debug)]
enum Purchase {
    /// 201: the order is confirmed and the stock is taken.
    Confirmed(Order),
    /// 409: not enough stock. The refused order is recorded; its id is in the Problem.
    OutOfStock(Problem),
    /// 422: the book does not exist, or the idempotency key was already used for another
    /// purchase. Retrying cannot help.
    Refused(Problem),
    /// 503 on every attempt: the storage is down; the caller may try again later.
    Unavailable { retry_after: Duration },
    /// Anything else: an invalid request, a 500, no answer at all.
    Failed(Error<Problem>),
}

async fn purchase(
    client: &Client,
    purchase_id: &str,
    book_id: &str,
    quantity: NonZeroU32,
    user_id: &str,
) -> Purchase {
    // Derived from the purchase, not drawn per attempt: a retry must send the same key.
    let idempotency_key = format!("books-purchase-{purchase_id}");
    let mut attempt = 1;
    loop {
        let result = client
            .create_order()
            .idempotency_key(idempotency_key.as_str())
            .body(
                CreateOrderRequest::builder()
                    .book_id(book_id)
                    .quantity(quantity)
                    .user_id(user_id),
            )
            .send()
            .await;
        let err = match result {
            Ok(order) => return Purchase::Confirmed(order.into_inner()),
            Err(err) => err,
        };
        let status = err.status().map(|status| status.as_u16());
        match (status, order_processor_client::problem(&err)) {
            (Some(409), Some(problem)) => return Purchase::OutOfStock(problem.clone()),
            (Some(422), Some(problem)) => return Purchase::Refused(problem.clone()),
            // Timeouts, refused connections and 503s are worth another attempt, and the
            // idempotency key makes it safe even if the first request did get through.
            _ if err.is_retryable() => {
                let delay =
                    order_processor_client::retry_after(&err).unwrap_or(DEFAULT_RETRY_DELAY);
                if attempt == ATTEMPTS {
                    return match status {
                        Some(503) => Purchase::Unavailable { retry_after: delay },
                        _ => Purchase::Failed(err),
                    };
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            _ => return Purchase::Failed(err),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Ok(base_url) = std::env::var("ORDER_PROCESSOR_URL") else {
        eprintln!("set ORDER_PROCESSOR_URL (e.g. http://localhost:8082) to place an order");
        return ExitCode::SUCCESS;
    };
    let client = Client::new(&base_url);
    let purchase_id = uuid::Uuid::new_v4().to_string();
    let quantity = NonZeroU32::MIN;
    match purchase(&client, &purchase_id, "book-1", quantity, "user-17").await {
        Purchase::Confirmed(order) => {
            println!("order {} confirmed: {} cents", order.id, *order.total_price);
        }
        Purchase::OutOfStock(problem) => {
            let order_id = problem.order_id.map(|id| id.to_string());
            println!(
                "out of stock, order {} rejected: {}",
                order_id.as_deref().unwrap_or("?"),
                problem.detail.as_deref().unwrap_or(&problem.title)
            );
        }
        Purchase::Refused(problem) => {
            println!(
                "refused ({}): {}",
                problem.type_,
                problem.detail.as_deref().unwrap_or(&problem.title)
            );
        }
        Purchase::Unavailable { retry_after } => {
            println!("the Order Processor is unavailable; try again in {retry_after:?}");
        }
        Purchase::Failed(err) => {
            eprintln!("the order failed: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
