//! The `OrderProcessor` layer against a live Order Processor: the refusals it names, the
//! retry helper's deadline and `Retry-After`, the headers every request carries, its bearer
//! token against a service that checks tokens, and the per-user limit of one that limits
//! orders. The README's doctests cover the paths that succeed.

use std::{
    net::{Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use order_processor::{
    access::Verifier,
    config::DEFAULT_AUDIENCE,
    http::server::Running,
    startup::{Application, Options},
    storage::{
        http::{HttpStorage, HttpStorageConfig},
        sqlite::SqliteStore,
    },
};
use order_processor_client::{
    IdempotencyKey, OrderError, OrderProcessor, Purchase,
    reqwest::header::{HeaderName, HeaderValue},
};
use tokio::{
    io::AsyncReadExt,
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

/// The head of one request, read from `socket` up to its blank line.
async fn read_head(socket: &mut TcpStream) -> String {
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
    String::from_utf8_lossy(&received[..head_end]).to_lowercase()
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
    let head = read_head(&mut socket).await;
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
async fn the_per_user_limit_is_a_named_refusal_to_retry_after_its_delay() {
    let options = Options {
        orders_per_user_per_minute: NonZeroU32::new(1),
        ..Options::default()
    };
    let service = Application::build_with(demo_store().await, LOOPBACK, options)
        .await
        .unwrap()
        .spawn();
    let orders = OrderProcessor::new(&service.url()).unwrap();
    let purchase = Purchase::new("book-1", 1, "user-1").unwrap();
    orders.place(&purchase, None).await.unwrap();

    let limited = orders.place(&purchase, None).await.unwrap_err();
    assert!(
        matches!(limited, OrderError::RateLimited { .. }),
        "{limited:?}"
    );
    // Nothing was recorded: the same purchase with its key may be placed after the delay,
    // which is at most the minute the limit counts.
    assert!(limited.is_transient());
    let wait = limited.retry_after().expect("a Retry-After");
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(60)).contains(&wait),
        "{wait:?}"
    );
    assert!(
        limited
            .to_string()
            .starts_with("too many orders for this user: "),
        "{limited}"
    );
    // Another user has a limit of their own.
    orders
        .place(&Purchase::new("book-1", 1, "user-2").unwrap(), None)
        .await
        .unwrap();
}

/// A fresh in-memory store holding the demo catalogue (`book-1` to `book-5`).
async fn demo_store() -> SqliteStore {
    let storage = SqliteStore::open(Path::new(":memory:")).unwrap();
    storage.seed_demo_catalogue().await.unwrap();
    storage
}

/// The shared secret of the Order Processor that checks tokens.
const SECRET: &str = "a-shared-secret-for-the-sdk-tests-0123456789";

/// A file holding [`SECRET`], as `AUTH_HS256_SECRET_FILE` names it; removed when dropped.
struct SecretFile(PathBuf);

impl SecretFile {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("sdk-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, SECRET).unwrap();
        Self(path)
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The Order Processor over the demo catalogue, checking bearer tokens signed with
/// [`SECRET`] for its default audience, until the handle is dropped.
async fn checking_tokens() -> (Running, SecretFile) {
    let secret = SecretFile::new();
    let path = secret.0.display().to_string();
    let access = Verifier::from_lookup(
        |name| (name == "AUTH_HS256_SECRET_FILE").then(|| path.clone()),
        DEFAULT_AUDIENCE,
    )
    .unwrap()
    .expect("a secret file: access is on");
    let service = Application::build(demo_store().await, LOOPBACK)
        .await
        .unwrap()
        .with_access(Some(Arc::new(access)))
        .spawn();
    (service, secret)
}

/// A token of `sub` for `aud` with the space-separated `scope`, signed with [`SECRET`],
/// valid for five minutes.
fn token(sub: &str, aud: &str, scope: &str) -> String {
    let claims = serde_json::json!({
        "sub": sub,
        "aud": aud,
        "scope": scope,
        "exp": get_current_timestamp() + 300,
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_service_that_checks_tokens_serves_a_valid_one_and_names_each_refusal() {
    let (service, _secret) = checking_tokens().await;
    let anonymous = OrderProcessor::new(&service.url()).unwrap();
    let purchase = Purchase::new("book-1", 1, "user-1").unwrap();

    let user = token("user-1", DEFAULT_AUDIENCE, "orders:write orders:read");
    let orders = anonymous.with_bearer_token(&user).unwrap();
    let order = orders.place(&purchase, None).await.unwrap();
    assert_eq!(orders.order(order.id).await.unwrap().id, order.id);

    // A token for the Storage Service, signed with the same secret, is for another audience.
    let storage = token("user-1", "storage-service", "orders:write");
    for (client, sent) in [
        (anonymous.clone(), None),
        (
            anonymous.with_bearer_token(&storage).unwrap(),
            Some(&storage),
        ),
    ] {
        let err = client.place(&purchase, None).await.unwrap_err();
        assert!(
            matches!(err, OrderError::Unauthorized { .. }),
            "{sent:?}: {err:?}"
        );
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .starts_with("a valid bearer token is needed: "),
            "{err}"
        );
        if let Some(sent) = sent {
            assert!(!format!("{err} {err:?}").contains(sent.as_str()), "{err:?}");
        }
    }

    // Reading does not allow placing.
    let reader = token("user-1", DEFAULT_AUDIENCE, "orders:read");
    let err = anonymous
        .with_bearer_token(&reader)
        .unwrap()
        .place(&purchase, None)
        .await
        .unwrap_err();
    assert!(matches!(err, OrderError::Forbidden { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .starts_with("the token does not allow this: "),
        "{err}"
    );
}

#[tokio::test]
async fn only_a_token_with_orders_any_user_acts_for_another_user() {
    let (service, _secret) = checking_tokens().await;
    let anonymous = OrderProcessor::new(&service.url()).unwrap();
    let user = anonymous
        .with_bearer_token(&token(
            "user-1",
            DEFAULT_AUDIENCE,
            "orders:write orders:read",
        ))
        .unwrap();
    let for_user_2 = Purchase::new("book-1", 1, "user-2").unwrap();

    let err = user.place(&for_user_2, None).await.unwrap_err();
    assert!(matches!(err, OrderError::Forbidden { .. }), "{err:?}");

    // The Books Service places for its buyers.
    let books_service = anonymous
        .with_bearer_token(&token(
            "books-service",
            DEFAULT_AUDIENCE,
            "orders:write orders:read orders:any-user",
        ))
        .unwrap();
    let order = books_service.place(&for_user_2, None).await.unwrap();
    assert_eq!(order.user_id.as_str(), "user-2");
    // Another user's order reads as one that does not exist.
    let err = user.order(order.id).await.unwrap_err();
    assert!(matches!(err, OrderError::NotFound), "{err:?}");
}
