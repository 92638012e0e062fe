//! The `OrderProcessor` layer against a live Order Processor: the refusals it names, the
//! retry helper's deadline and `Retry-After`, and the headers every request carries. The
//! README's doctests cover the paths that succeed. The answers of a service that checks
//! tokens (`401`, `403`) and limits orders per user (`429`) come from a loopback server that
//! gives the answer the contract documents.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use order_processor::{
    startup::Application,
    storage::http::{HttpStorage, HttpStorageConfig},
};
use order_processor_client::{
    IdempotencyKey, OrderError, OrderProcessor, Purchase,
    reqwest::header::{HeaderName, HeaderValue},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

#[tokio::test]
async fn a_key_reused_for_another_purchase_and_an_unknown_order_are_named_refusals() {
    let service = Application::demo().await.unwrap();
    let orders = OrderProcessor::new(&service.url()).unwrap();
    let key = IdempotencyKey::new("reused-key").unwrap();
    let first = Purchase::new("book-1", 1, "user-1").unwrap();
    orders.place(&first, Some(&key)).await.unwrap();

    let other = Purchase::new("book-1", 2, "user-1").unwrap();
    let err = orders.place(&other, Some(&key)).await.unwrap_err();
    assert!(matches!(err, OrderError::KeyReused { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        err.to_string().starts_with("idempotency key reused: "),
        "{err}"
    );

    let missing = orders.order(uuid::Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(missing, OrderError::NotFound), "{missing:?}");
    assert_eq!(missing.to_string(), "no order has this id");
}

#[tokio::test]
async fn cancelling_a_rejected_or_unknown_order_is_a_named_refusal() {
    let service = Application::demo().await.unwrap();
    let orders = OrderProcessor::new(&service.url()).unwrap();
    // book-5 has no stock: the order is recorded as rejected.
    let Err(OrderError::OutOfStock {
        order_id: Some(rejected),
        ..
    }) = orders
        .place(&Purchase::new("book-5", 1, "user-1").unwrap(), None)
        .await
    else {
        panic!("book-5 is out of stock");
    };
    let err = orders.cancel(rejected, None).await.unwrap_err();
    assert!(matches!(err, OrderError::NotCancellable { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot cancel: "), "{err}");
    let unknown = orders.cancel(uuid::Uuid::new_v4(), None).await.unwrap_err();
    assert!(matches!(unknown, OrderError::NotFound), "{unknown:?}");
    let empty = orders.cancel(rejected, Some("")).await.unwrap_err();
    assert!(
        matches!(&empty, OrderError::Invalid { field, .. } if field == "/reason"),
        "{empty:?}"
    );
}

#[tokio::test]
async fn every_bound_of_the_contract_is_checked_before_sending_naming_the_field() {
    for (book, quantity, user, field) in [
        ("", 1, "u", "/bookId"),
        ("a/b", 1, "u", "/bookId"),
        (&"b".repeat(65) as &str, 1, "u", "/bookId"),
        ("b", 0, "u", "/quantity"),
        ("b", 1001, "u", "/quantity"),
        ("b", 1, "", "/userId"),
        ("b", 1, "u\u{7}", "/userId"),
    ] {
        match Purchase::new(book, quantity, user) {
            Err(OrderError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{book:?} {quantity} {user:?}: {other:?}"),
        }
    }
    assert!(Purchase::new("b", 1000, "u").is_ok());
    for key in ["", "has space", &"k".repeat(129)] {
        assert!(
            matches!(IdempotencyKey::new(key), Err(OrderError::Invalid { field, .. }) if field == "Idempotency-Key"),
            "{key:?}"
        );
    }
    // The stream refuses its bounds too, before sending.
    let orders = OrderProcessor::new("http://127.0.0.1:9").unwrap();
    for (user, size, field) in [
        ("u", 0, "limit"),
        ("u", 101, "limit"),
        ("a/b", 10, "userId"),
    ] {
        use futures::StreamExt;
        let first = orders.user_orders(user, size).next().await;
        assert!(
            matches!(&first, Some(Err(OrderError::Invalid { field: named, .. })) if named == field),
            "{first:?}"
        );
    }
}

#[tokio::test]
async fn the_retry_helper_retries_a_503_after_its_retry_after_and_stops_at_the_deadline() {
    // A Storage Service address where nothing listens: every order answers 503.
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.unwrap();
    let down = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let storage = HttpStorage::new(&down, HttpStorageConfig::default()).unwrap();
    let service = Application::build(storage, LOOPBACK).await.unwrap().spawn();
    let orders = OrderProcessor::new(&service.url()).unwrap();
    let purchase = Purchase::new("book-1", 1, "user-1").unwrap();
    let key = IdempotencyKey::new("down-1").unwrap();

    let started = Instant::now();
    let err = orders
        .place_with_retries(&purchase, &key, Duration::from_secs(3))
        .await
        .unwrap_err();
    let took = started.elapsed();

    let OrderError::Unavailable {
        retry_after: Some(wait),
        ..
    } = err
    else {
        panic!("expected unavailable with Retry-After, got {err:?}");
    };
    // One wait of Retry-After between two attempts, and no wait that would end past the
    // deadline.
    assert!(took >= wait, "{took:?}: the helper did not wait {wait:?}");
    assert!(took < Duration::from_secs(3), "{took:?}: past the deadline");
}

#[tokio::test]
async fn every_request_carries_the_callers_headers_and_no_undocumented_one() {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let orders = OrderProcessor::new(&url).unwrap().with_headers(|| {
        vec![(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )]
    });
    let request = tokio::spawn(async move { orders.order(uuid::Uuid::new_v4()).await });
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut head = vec![0; 4096];
    let read = socket.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_lowercase();
    drop(socket);
    let _ = request.await;

    assert!(
        head.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "{head}"
    );
    assert!(!head.contains("api-version"), "{head}");
}

/// A JWT's shape: three base64url parts.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib29rcyJ9.c2lnbmF0dXJl";

/// The head of one request, read from `socket` up to its blank line, with its body read
/// too (by `Content-Length`) so that an answer is not cut by unread bytes.
async fn read_request(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0; 4096];
    let head_end = loop {
        let read = socket.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the connection closed before the head ended");
        received.extend_from_slice(&chunk[..read]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    while received.len() < head_end + length {
        let read = socket.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the connection closed before the body ended");
        received.extend_from_slice(&chunk[..read]);
    }
    head
}

/// A server on a loopback port that answers every request with `status`, the extra
/// `headers` and a Problem of `type_` and `title`; its URL.
async fn answering(status: u16, headers: &'static str, type_: &str, title: &str) -> String {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = serde_json::json!({
        "type": type_,
        "title": title,
        "status": status,
        "detail": format!("{title} (answered by the test server)"),
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 {status} Refused\r\ncontent-type: application/json\r\n{headers}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_request(&mut socket).await;
            socket.write_all(answer.as_bytes()).await.unwrap();
        }
    });
    url
}

#[tokio::test]
async fn a_bearer_token_goes_with_every_request_beside_the_callers_headers() {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let orders = OrderProcessor::new(&url)
        .unwrap()
        .with_bearer_token(TOKEN)
        .unwrap()
        .with_headers(|| {
            vec![(
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("books-7f3a"),
            )]
        });
    assert!(!format!("{orders:?}").contains(TOKEN), "{orders:?}");
    let purchase = Purchase::new("book-1", 1, "user-1").unwrap();
    let request = tokio::spawn(async move { orders.place(&purchase, None).await });
    let (mut socket, _) = listener.accept().await.unwrap();
    let head = read_request(&mut socket).await;
    drop(socket);
    let _ = request.await;

    assert!(
        head.contains(&format!(
            "\r\nauthorization: bearer {}\r\n",
            TOKEN.to_lowercase()
        )),
        "{head}"
    );
    assert!(head.contains("\r\nx-request-id: books-7f3a\r\n"), "{head}");
}

#[tokio::test]
async fn a_token_that_is_not_a_bearer_token_is_refused_without_being_shown() {
    let orders = OrderProcessor::new("http://127.0.0.1:9").unwrap();
    for token in ["", "s3cret-token\n", "s3cret token"] {
        let err = orders.with_bearer_token(token).unwrap_err();
        assert!(
            matches!(&err, OrderError::Invalid { field, .. } if field == "token"),
            "{err:?}"
        );
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }
}

#[tokio::test]
async fn a_refused_token_a_missing_scope_and_the_per_user_limit_are_named_refusals() {
    let purchase = Purchase::new("book-1", 1, "user-1").unwrap();
    let place = |url: String| {
        let purchase = purchase.clone();
        async move {
            let orders = OrderProcessor::new(&url).unwrap();
            orders.place(&purchase, None).await.unwrap_err()
        }
    };

    let unauthorized = place(
        answering(
            401,
            "www-authenticate: Bearer realm=\"order-processor\"\r\n",
            "/problems/unauthorized",
            "A valid bearer token is needed",
        )
        .await,
    )
    .await;
    assert!(
        matches!(unauthorized, OrderError::Unauthorized { .. }),
        "{unauthorized:?}"
    );
    assert!(!unauthorized.is_transient());
    assert!(
        unauthorized
            .to_string()
            .starts_with("a valid bearer token is needed: "),
        "{unauthorized}"
    );

    let forbidden = place(
        answering(
            403,
            "",
            "/problems/forbidden",
            "The token does not allow this",
        )
        .await,
    )
    .await;
    assert!(
        matches!(forbidden, OrderError::Forbidden { .. }),
        "{forbidden:?}"
    );
    assert!(!forbidden.is_transient());
    assert!(
        forbidden
            .to_string()
            .starts_with("the token does not allow this: "),
        "{forbidden}"
    );

    let limited = place(
        answering(
            429,
            "retry-after: 7\r\n",
            "/problems/rate-limited",
            "Too many orders for this user",
        )
        .await,
    )
    .await;
    assert!(
        matches!(limited, OrderError::RateLimited { .. }),
        "{limited:?}"
    );
    // Nothing was recorded: the same purchase with its key may be placed after the delay.
    assert!(limited.is_transient());
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        limited
            .to_string()
            .starts_with("too many orders for this user: "),
        "{limited}"
    );
}
