//! Bearer tokens on both services: each refused token is a `401` with `WWW-Authenticate`, a
//! missing scope a `403`, a user reaches only their own orders unless the token holds
//! `orders:any-user`, health and docs stay open, keys are chosen by `kid` and rotated by
//! rewriting their file, the Order Processor sends its own token to a protected Storage
//! Service, and no token or secret reaches a log line.

#[path = "support"]
mod support {
    pub mod catalogue;
    pub mod fs;
    pub mod net;
    pub mod problem;
    pub mod process;
    pub mod tokens;
}

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use order_processor::{
    access::Verifier, domain::storage::Catalogue, http::server::Running, startup::Application,
    storage::sqlite::SqliteStore, watched::REFRESH_PERIOD,
};
use reqwest::{Method, header::WWW_AUTHENTICATE};
use serde_json::{Value, json};

use support::{
    catalogue::{book, stock_of},
    fs::TempDir,
    net::LOOPBACK,
    problem::problem,
    process::ChildService,
    tokens::{SECRET, claims, es256, fixture, hs256, hs256_with, rs256, unsigned, with},
};

const ORDER_PROCESSOR: &str = env!("CARGO_BIN_EXE_order-processor");
const STORAGE_SERVICE: &str = env!("CARGO_BIN_EXE_storage-service");

const AUDIENCE: &str = "order-processor";
const ISSUER: &str = "https://id.bookstore.test";
const OTHER_SECRET: &str = "another-secret-that-this-service-never-saw";

/// Claims of `sub` with `scope` that the Order Processor under test accepts.
fn valid(sub: &str, scope: &str) -> Value {
    with(claims(sub, AUDIENCE, scope), json!({ "iss": ISSUER }))
}

/// An Order Processor in-process on the embedded store, with `book-1` (10 copies) and the
/// access settings of `vars`.
struct Shop {
    url: String,
    store: SqliteStore,
    client: reqwest::Client,
    _server: Running,
    dir: TempDir,
}

impl Shop {
    /// Checks tokens with the shared secret and the fixtures' JWKS, for [`ISSUER`].
    async fn protected() -> Self {
        Self::start(|dir| {
            vec![
                ("AUTH_HS256_SECRET_FILE", secret_file(dir, SECRET)),
                ("AUTH_JWKS_FILE", path(&fixture("jwks.json"))),
                ("AUTH_ISSUER", ISSUER.to_owned()),
            ]
        })
        .await
    }

    /// `vars` names files in the shop's directory, which it is given; the key files are read
    /// again every 50 ms.
    async fn start(vars: impl FnOnce(&Path) -> Vec<(&'static str, String)>) -> Self {
        let dir = TempDir::new();
        let vars = vars(dir.path());
        let verifier = Verifier::from_lookup(
            |name| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.clone())
            },
            AUDIENCE,
        )
        .expect("valid access settings")
        .map(|verifier| Arc::new(verifier.with_refresh_period(Duration::from_millis(50))));
        let store = SqliteStore::open(&dir.path().join("orders.db")).expect("open the store");
        store
            .put_book(&book("book-1", 1299, 10))
            .await
            .expect("put a book");
        let server = Application::build(store.clone(), LOOPBACK)
            .await
            .expect("bind the order processor")
            .with_access(verifier)
            .spawn();
        Self {
            url: server.url(),
            store,
            client: reqwest::Client::new(),
            _server: server,
            dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("an answer")
    }

    async fn order(&self, token: Option<&str>, user: &str) -> reqwest::Response {
        let body = json!({"bookId": "book-1", "quantity": 1, "userId": user});
        self.call(Method::POST, "/orders", token, Some(body)).await
    }

    /// Places an order for `user` with their own token; answers its id.
    async fn placed(&self, user: &str) -> String {
        let token = hs256(&valid(user, "orders:write"));
        let response = self.order(Some(&token), user).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let order: Value = response.json().await.expect("an order");
        order["id"].as_str().expect("its id").to_owned()
    }

    async fn stock(&self) -> i64 {
        stock_of(&self.store, "book-1").await
    }

    /// A refusal counter of `/metrics`.
    async fn refused(&self, reason: &str) -> f64 {
        let text = self
            .call(Method::GET, "/metrics", None, None)
            .await
            .text()
            .await
            .expect("the metrics");
        let series = format!("http_requests_refused_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0.0, |value| value.parse().expect("a sample value"))
    }
}

fn path(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Writes `secret` and a line end to a file in `dir`; answers its path.
fn secret_file(dir: &Path, secret: &str) -> String {
    let file = dir.join(format!("secret-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, format!("{secret}\n")).expect("write a secret file");
    path(&file)
}

/// The `WWW-Authenticate` of an answer.
fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .unwrap_or_else(|| panic!("no WWW-Authenticate on a {}", response.status()))
        .to_str()
        .expect("an ASCII challenge")
        .to_owned()
}

/// Checks a `401` with `challenge` and the Problem of a refused token.
async fn assert_unauthorized(response: reqwest::Response, expected: &str, what: &str) {
    assert_eq!(challenge(&response), expected, "{what}");
    let body = problem(response, 401).await;
    assert_eq!(body["type"], "/problems/unauthorized", "{what}: {body}");
}

#[tokio::test]
async fn every_refused_token_is_a_401_problem_with_a_bearer_challenge_and_nothing_is_recorded() {
    let shop = Shop::protected().await;
    let before = shop.refused("unauthenticated").await;
    let now = jsonwebtoken::get_current_timestamp();
    let order = valid("user-1", "orders:write");
    let refused = [
        (
            "expired",
            hs256(&with(order.clone(), json!({"exp": now - 120}))),
        ),
        (
            "not yet valid",
            hs256(&with(order.clone(), json!({"nbf": now + 600}))),
        ),
        (
            "without exp",
            hs256(&with(order.clone(), json!({"exp": null}))),
        ),
        (
            "without sub",
            hs256(&with(order.clone(), json!({"sub": null}))),
        ),
        ("another secret", hs256_with(OTHER_SECRET, &order)),
        (
            "another RSA key under a known kid",
            rs256("rsa-2.key", Some("rsa-1"), &order),
        ),
        ("an unknown kid", rs256("rsa-2.key", Some("rsa-2"), &order)),
        (
            "an ES256 key named as the RSA key",
            es256("ec-1.key", Some("rsa-1"), &order),
        ),
        (
            "another audience",
            hs256(&with(order.clone(), json!({"aud": "storage-service"}))),
        ),
        (
            "another issuer",
            hs256(&with(order.clone(), json!({"iss": "https://other.test"}))),
        ),
        (
            "without an issuer",
            hs256(&with(order.clone(), json!({"iss": null}))),
        ),
        ("alg none", unsigned(&order)),
        ("not a JWT", "not-a-jwt".to_owned()),
        ("a tampered payload", {
            let genuine = hs256(&order);
            let forged = hs256_with(
                OTHER_SECRET,
                &valid("user-1", "orders:write orders:any-user"),
            );
            let (header, rest) = genuine.split_once('.').unwrap();
            let signature = rest.rsplit_once('.').unwrap().1;
            let payload = forged.split('.').nth(1).unwrap();
            format!("{header}.{payload}.{signature}")
        }),
    ];
    for (what, token) in &refused {
        let response = shop.order(Some(token), "user-1").await;
        assert_unauthorized(
            response,
            "Bearer realm=\"order-processor\", error=\"invalid_token\"",
            what,
        )
        .await;
    }
    // No token at all, or credentials of another scheme: no error code (RFC 6750).
    let response = shop.order(None, "user-1").await;
    assert_unauthorized(response, "Bearer realm=\"order-processor\"", "no token").await;
    let basic = shop
        .client
        .post(format!("{}/orders", shop.url))
        .basic_auth("user-1", Some("password"))
        .json(&json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"}))
        .send()
        .await
        .unwrap();
    assert_unauthorized(basic, "Bearer realm=\"order-processor\"", "basic").await;

    assert_eq!(shop.stock().await, 10, "no order took stock");
    let read = shop
        .call(
            Method::GET,
            "/orders/user/user-1",
            Some(&hs256(&valid("user-1", "orders:read"))),
            None,
        )
        .await;
    let page: Value = read.json().await.unwrap();
    assert_eq!(page["items"], json!([]), "no order was recorded");
    let counted = shop.refused("unauthenticated").await - before;
    assert!(counted >= (refused.len() + 2) as f64, "{counted}");
}

#[tokio::test]
async fn every_protected_operation_needs_a_token_and_head_is_held_like_get() {
    let shop = Shop::protected().await;
    let id = shop.placed("user-1").await;
    for (method, path, body) in [
        (Method::GET, format!("/orders/{id}"), None),
        (Method::HEAD, format!("/orders/{id}"), None),
        (
            Method::POST,
            format!("/orders/{id}/cancel"),
            Some(json!({})),
        ),
        (Method::GET, "/orders/user/user-1".to_owned(), None),
        (Method::HEAD, "/orders/user/user-1".to_owned(), None),
    ] {
        let response = shop.call(method.clone(), &path, None, body).await;
        assert_eq!(response.status(), 401, "{method} {path}");
        assert_eq!(challenge(&response), "Bearer realm=\"order-processor\"");
    }
}

#[tokio::test]
async fn a_token_without_the_scope_of_the_operation_is_a_403_naming_the_scope() {
    let shop = Shop::protected().await;
    let id = shop.placed("user-1").await;
    let before = shop.refused("forbidden").await;
    let reader = hs256(&valid("user-1", "orders:read"));
    let writer = hs256(&valid("user-1", "orders:write"));
    let unscoped = rs256(
        "rsa-1.key",
        Some("rsa-1"),
        &with(valid("user-1", ""), json!({"scope": null})),
    );
    let cases = [
        (Method::POST, "/orders".to_owned(), &reader, "orders:write"),
        (
            Method::POST,
            format!("/orders/{id}/cancel"),
            &reader,
            "orders:write",
        ),
        (Method::GET, format!("/orders/{id}"), &writer, "orders:read"),
        (
            Method::GET,
            "/orders/user/user-1".to_owned(),
            &writer,
            "orders:read",
        ),
        (
            Method::GET,
            format!("/orders/{id}"),
            &unscoped,
            "orders:read",
        ),
    ];
    for (method, path, token, scope) in &cases {
        let body = match path.as_str() {
            "/orders" => Some(json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"})),
            _ if *method == Method::POST => Some(json!({})),
            _ => None,
        };
        let response = shop.call(method.clone(), path, Some(token), body).await;
        assert_eq!(
            challenge(&response),
            format!(
                "Bearer realm=\"order-processor\", error=\"insufficient_scope\", scope=\"{scope}\""
            ),
            "{method} {path}"
        );
        let body = problem(response, 403).await;
        assert_eq!(body["type"], "/problems/forbidden", "{body}");
        assert!(body["detail"].as_str().unwrap().contains(scope), "{body}");
    }
    assert_eq!(shop.stock().await, 9, "only the first order took stock");
    let counted = shop.refused("forbidden").await - before;
    assert!(counted >= cases.len() as f64, "{counted}");
}

#[tokio::test]
async fn another_users_order_is_not_found_and_cannot_be_cancelled() {
    let shop = Shop::protected().await;
    let id = shop.placed("user-1").await;
    let other = hs256(&valid("user-2", "orders:read orders:write"));
    let unknown = shop
        .call(
            Method::GET,
            &format!("/orders/{}", uuid::Uuid::now_v7()),
            Some(&other),
            None,
        )
        .await;
    let unknown = problem(unknown, 404).await;
    let read = shop
        .call(Method::GET, &format!("/orders/{id}"), Some(&other), None)
        .await;
    assert_eq!(
        problem(read, 404).await,
        unknown,
        "the same answer as an unknown id"
    );
    let cancel = shop
        .call(
            Method::POST,
            &format!("/orders/{id}/cancel"),
            Some(&other),
            Some(json!({})),
        )
        .await;
    assert_eq!(problem(cancel, 404).await, unknown);
    assert_eq!(shop.stock().await, 9, "the order was not cancelled");

    let own = hs256(&valid("user-1", "orders:read orders:write"));
    let read = shop
        .call(Method::GET, &format!("/orders/{id}"), Some(&own), None)
        .await;
    assert_eq!(read.status(), 200);
    let cancel = shop
        .call(
            Method::POST,
            &format!("/orders/{id}/cancel"),
            Some(&own),
            Some(json!({})),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    assert_eq!(shop.stock().await, 10);
}

#[tokio::test]
async fn listing_or_placing_for_another_user_needs_orders_any_user() {
    let shop = Shop::protected().await;
    let id = shop.placed("user-1").await;
    let other = hs256(&valid("user-2", "orders:read orders:write"));
    let list = shop
        .call(Method::GET, "/orders/user/user-1", Some(&other), None)
        .await;
    assert!(list.headers().get(WWW_AUTHENTICATE).is_none());
    let body = problem(list, 403).await;
    assert_eq!(body["type"], "/problems/forbidden");
    assert!(
        body["detail"].as_str().unwrap().contains("orders:any-user"),
        "{body}"
    );
    let place = shop.order(Some(&other), "user-1").await;
    let body = problem(place, 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("orders:any-user"),
        "{body}"
    );
    assert_eq!(shop.stock().await, 9, "no order for user-1 from user-2");

    // A service such as the Books Service acts for any user.
    let service = es256(
        "ec-1.key",
        Some("ec-1"),
        &valid("books-service", "orders:read orders:write orders:any-user"),
    );
    assert_eq!(shop.order(Some(&service), "user-1").await.status(), 201);
    let list = shop
        .call(Method::GET, "/orders/user/user-1", Some(&service), None)
        .await;
    let page: Value = list.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let read = shop
        .call(Method::GET, &format!("/orders/{id}"), Some(&service), None)
        .await;
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn health_docs_and_metrics_need_no_token() {
    let shop = Shop::protected().await;
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/docs",
        "/openapi.json",
        "/openapi.yaml",
        "/metrics",
    ] {
        let response = shop.call(Method::GET, path, None, None).await;
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn an_hs256_token_is_refused_where_only_a_key_set_is_configured() {
    let shop = Shop::start(|_| vec![("AUTH_JWKS_FILE", path(&fixture("jwks.json")))]).await;
    let claims = claims("user-1", AUDIENCE, "orders:write");
    let response = shop.order(Some(&hs256(&claims)), "user-1").await;
    assert_unauthorized(
        response,
        "Bearer realm=\"order-processor\", error=\"invalid_token\"",
        "HS256",
    )
    .await;
    let response = shop
        .order(Some(&rs256("rsa-1.key", Some("rsa-1"), &claims)), "user-1")
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn keys_of_a_key_set_are_chosen_by_kid_and_a_single_key_serves_tokens_without_one() {
    let shop = Shop::start(|_| vec![("AUTH_JWKS_FILE", path(&fixture("jwks.json")))]).await;
    let claims = claims("user-1", AUDIENCE, "orders:write");
    for (what, token, status) in [
        (
            "RS256 by its kid",
            rs256("rsa-1.key", Some("rsa-1"), &claims),
            201,
        ),
        (
            "ES256 by its kid",
            es256("ec-1.key", Some("ec-1"), &claims),
            201,
        ),
        (
            "no kid among two keys",
            rs256("rsa-1.key", None, &claims),
            401,
        ),
        (
            "a kid of no key",
            es256("ec-1.key", Some("ec-2"), &claims),
            401,
        ),
    ] {
        assert_eq!(
            shop.order(Some(&token), "user-1").await.status(),
            status,
            "{what}"
        );
    }

    let jwks: Value =
        serde_json::from_slice(&std::fs::read(fixture("jwks.json")).unwrap()).unwrap();
    let mut rsa = jwks["keys"][0].clone();
    rsa.as_object_mut().unwrap().remove("kid");
    let single = Shop::start(move |dir| {
        let file = dir.join("single.json");
        std::fs::write(&file, json!({ "keys": [rsa] }).to_string()).unwrap();
        vec![("AUTH_JWKS_FILE", path(&file))]
    })
    .await;
    let response = single
        .order(Some(&rs256("rsa-1.key", None, &claims)), "user-1")
        .await;
    assert_eq!(response.status(), 201);
}

/// Places orders with `token` until one is answered `status`, for up to five seconds.
async fn answered_within(shop: &Shop, token: &str, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if shop.order(Some(token), "user-1").await.status() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn rewritten_key_files_take_effect_without_a_restart_and_broken_ones_keep_the_last_keys() {
    let shop = Shop::start(|dir| {
        let jwks = dir.join("jwks.json");
        std::fs::copy(fixture("jwks.json"), &jwks).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        vec![
            ("AUTH_JWKS_FILE", path(&jwks)),
            ("AUTH_HS256_SECRET_FILE", path(&secret)),
        ]
    })
    .await;
    let jwks = shop.dir.path().join("jwks.json");
    let secret = shop.dir.path().join("secret");
    let claims = claims("user-1", AUDIENCE, "orders:write");
    let (old_key, new_key) = (
        rs256("rsa-1.key", Some("rsa-1"), &claims),
        rs256("rsa-2.key", Some("rsa-2"), &claims),
    );
    assert_eq!(shop.order(Some(&old_key), "user-1").await.status(), 201);
    assert_eq!(shop.order(Some(&new_key), "user-1").await.status(), 401);

    std::fs::copy(fixture("jwks-rotated.json"), &jwks).unwrap();
    assert!(
        answered_within(&shop, &new_key, 201).await,
        "the new key is used"
    );
    assert_eq!(shop.order(Some(&old_key), "user-1").await.status(), 401);

    std::fs::write(&jwks, "{ not a key set").unwrap();
    std::fs::write(&secret, "short\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        shop.order(Some(&new_key), "user-1").await.status(),
        201,
        "the last good keys stay"
    );
    assert_eq!(
        shop.order(Some(&hs256(&claims)), "user-1").await.status(),
        201,
        "the last good secret stays"
    );

    let rotated_secret = "a-rotated-shared-secret-for-tests-0123456789";
    std::fs::write(&secret, rotated_secret).unwrap();
    let token = hs256_with(rotated_secret, &claims);
    assert!(
        answered_within(&shop, &token, 201).await,
        "the new secret is used"
    );
    assert_eq!(
        shop.order(Some(&hs256(&claims)), "user-1").await.status(),
        401
    );
}

// ---------------------------------------------------------------------------------------
// The binaries

/// Starts `binary` with `env`, files in `dir` named by `files` (variable, content) written
/// first.
fn start(binary: &str, dir: &Path, files: &[(&str, &str)], env: &[(&str, &str)]) -> ChildService {
    let written: Vec<(String, String)> = files
        .iter()
        .map(|(variable, content)| {
            let file = dir.join(format!(
                "{}-{}",
                variable.to_lowercase(),
                uuid::Uuid::new_v4()
            ));
            std::fs::write(&file, content).expect("write a file");
            ((*variable).to_owned(), path(&file))
        })
        .collect();
    let mut all: Vec<(&str, &str)> = written
        .iter()
        .map(|(variable, file)| (variable.as_str(), file.as_str()))
        .collect();
    all.extend_from_slice(env);
    ChildService::start(binary, &all)
}

const STORAGE_SECRET: &str = "the-storage-services-own-secret-0123456789";

fn storage_token(secret: &str) -> String {
    hs256_with(
        secret,
        &claims("order-processor", "storage-service", "storage:orders"),
    )
}

#[tokio::test]
async fn open_access_is_announced_and_changes_nothing() {
    let service = ChildService::start(ORDER_PROCESSOR, &[]);
    let warning = service.wait_for(|line| line.contains("access is open"));
    assert!(warning.contains("WARN"), "{warning}");
    let response = reqwest::Client::new()
        .post(format!("{}/orders", service.url()))
        .json(&json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn the_storage_service_asks_for_its_own_audience_and_scopes() {
    let dir = TempDir::new();
    let storage = protected_storage_service(&dir);
    let client = reqwest::Client::new();
    let call = |method: Method, path: &str, scope: Option<&str>, body: Option<Value>| {
        let mut request = client.request(method, format!("{}{path}", storage.url()));
        if let Some(scope) = scope {
            let claims = claims("order-processor", "storage-service", scope);
            request = request.bearer_auth(hs256_with(STORAGE_SECRET, &claims));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    assert_eq!(
        call(Method::GET, "/health", None, None)
            .await
            .unwrap()
            .status(),
        200
    );
    let anonymous = call(Method::GET, "/books", None, None).await.unwrap();
    assert_unauthorized(anonymous, "Bearer realm=\"storage-service\"", "no token").await;
    let for_the_order_processor = client
        .get(format!("{}/books", storage.url()))
        .bearer_auth(hs256_with(
            STORAGE_SECRET,
            &claims("x", AUDIENCE, "storage:orders storage:catalogue"),
        ))
        .send()
        .await
        .unwrap();
    assert_unauthorized(
        for_the_order_processor,
        "Bearer realm=\"storage-service\", error=\"invalid_token\"",
        "another audience",
    )
    .await;
    assert_eq!(
        call(Method::GET, "/books", Some(""), None)
            .await
            .unwrap()
            .status(),
        200
    );

    let book =
        json!({"title": "T", "author": "A", "price": 1000, "currency": "EUR", "quantity": 3});
    let quantity = json!({"quantity": 4});
    let new_order = json!({
        "orderId": uuid::Uuid::now_v7(), "bookId": "book-1", "userId": "user-1",
        "quantity": 1, "status": "pending"
    });
    for (method, path, body, scope, needed) in [
        (
            Method::PUT,
            "/books/book-9",
            Some(book.clone()),
            "storage:orders",
            "storage:catalogue",
        ),
        (
            Method::PUT,
            "/books/book-1/quantity",
            Some(quantity.clone()),
            "storage:orders",
            "storage:catalogue",
        ),
        (
            Method::POST,
            "/orders",
            Some(new_order.clone()),
            "storage:catalogue",
            "storage:orders",
        ),
        (
            Method::GET,
            "/orders",
            None,
            "storage:catalogue",
            "storage:orders",
        ),
    ] {
        let response = call(method.clone(), path, Some(scope), body.clone())
            .await
            .unwrap();
        assert_eq!(
            challenge(&response),
            format!(
                "Bearer realm=\"storage-service\", error=\"insufficient_scope\", scope=\"{needed}\""
            ),
            "{method} {path}"
        );
        problem(response, 403).await;
        let response = call(method.clone(), path, Some(needed), body)
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{method} {path}: {}",
            response.status()
        );
    }
}

/// A Storage Service that checks tokens signed with `STORAGE_SECRET`.
fn protected_storage_service(dir: &TempDir) -> ChildService {
    start(
        STORAGE_SERVICE,
        dir.path(),
        &[("AUTH_HS256_SECRET_FILE", STORAGE_SECRET)],
        &[],
    )
}

/// An order placed through an Order Processor that sends `token_file_text` as its storage
/// token, to a Storage Service that checks tokens signed with `STORAGE_SECRET`; with the
/// Order Processor, whose log the caller may read, and the Storage Service kept running.
async fn order_through_a_protected_storage_service(
    dir: &TempDir,
    token_file_text: &str,
) -> (reqwest::Response, ChildService, ChildService) {
    let storage = protected_storage_service(dir);
    let order_processor = start(
        ORDER_PROCESSOR,
        dir.path(),
        &[("STORAGE_SERVICE_TOKEN_FILE", token_file_text)],
        // The recovery task's first scan, at a random moment of its period, would be one
        // more call with the token, and one more refusal to count.
        &[
            ("STORAGE_SERVICE_URL", storage.url()),
            ("RECOVERY_PERIOD", "1h"),
        ],
    );
    let response = reqwest::Client::new()
        .post(format!("{}/orders", order_processor.url()))
        .json(&json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"}))
        .send()
        .await
        .unwrap();
    (response, order_processor, storage)
}

#[tokio::test]
async fn the_order_processor_sends_its_token_to_a_protected_storage_service() {
    let dir = TempDir::new();
    let token_file_text = format!("{}\n", storage_token(STORAGE_SECRET));
    let (response, _order_processor, _storage) =
        order_through_a_protected_storage_service(&dir, &token_file_text).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn a_storage_token_the_storage_service_refuses_is_a_503_and_an_error_in_the_log() {
    let dir = TempDir::new();
    let (response, order_processor, storage) =
        order_through_a_protected_storage_service(&dir, &storage_token(OTHER_SECRET)).await;
    assert!(response.headers().get("retry-after").is_some());
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "/problems/storage-unavailable", "{body}");
    let line = order_processor.wait_for(|line| line.contains("refused the storage token"));
    assert!(line.contains("ERROR"), "{line}");
    // Another attempt with the same token would meet the same refusal: none is made.
    let refusals = all_lines(&storage)
        .iter()
        .filter(|line| line.contains("refused a bearer token"))
        .count();
    assert_eq!(refusals, 1, "attempts the Storage Service refused");
}

#[tokio::test]
async fn a_rewritten_storage_token_file_is_sent_from_its_next_read_on() {
    let dir = TempDir::new();
    let storage = protected_storage_service(&dir);
    let token_file = dir.path().join("storage-token");
    std::fs::write(&token_file, storage_token(OTHER_SECRET)).expect("write the token");
    let token_path = path(&token_file);
    let order_processor = ChildService::start(
        ORDER_PROCESSOR,
        &[
            ("STORAGE_SERVICE_TOKEN_FILE", &token_path),
            ("STORAGE_SERVICE_URL", storage.url()),
        ],
    );
    let client = reqwest::Client::new();
    let place = || async {
        client
            .post(format!("{}/orders", order_processor.url()))
            .json(&json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"}))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(place().await, 503, "a token the Storage Service refuses");

    // As a rotated Secret reaches the pod's volume: the file is replaced, the service runs on.
    std::fs::write(&token_file, storage_token(STORAGE_SECRET)).expect("write the token");
    // The file is read again every `watched::REFRESH_PERIOD` (30 s).
    let deadline = Instant::now() + REFRESH_PERIOD + Duration::from_secs(15);
    loop {
        match place().await.as_u16() {
            201 => break,
            503 => assert!(
                Instant::now() < deadline,
                "the rewritten token was still not sent {} s later",
                REFRESH_PERIOD.as_secs() + 15
            ),
            status => panic!("placing an order answered {status}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every line the service logged from its start until it has been quiet for a moment.
fn all_lines(service: &ChildService) -> Vec<String> {
    let mut lines = service.startup.clone();
    while let Ok(line) = service.lines.recv_timeout(Duration::from_millis(500)) {
        lines.push(line);
    }
    lines
}

#[tokio::test]
async fn no_token_or_secret_appears_in_any_log_line_of_either_service_in_either_format() {
    for format in ["json", "text"] {
        let dir = TempDir::new();
        let verbose = [("LOG_FORMAT", format), ("RUST_LOG", "trace")];
        let storage = start(
            STORAGE_SERVICE,
            dir.path(),
            &[("AUTH_HS256_SECRET_FILE", STORAGE_SECRET)],
            &verbose,
        );
        let token_for_storage = storage_token(STORAGE_SECRET);
        let storage_url = storage.url().to_owned();
        let mut env = verbose.to_vec();
        env.push(("STORAGE_SERVICE_URL", &storage_url));
        let order_processor = start(
            ORDER_PROCESSOR,
            dir.path(),
            &[
                ("AUTH_HS256_SECRET_FILE", SECRET),
                ("STORAGE_SERVICE_TOKEN_FILE", &token_for_storage),
            ],
            &env,
        );
        let client = reqwest::Client::new();
        let order = json!({"bookId": "book-1", "quantity": 1, "userId": "user-1"});
        let now = jsonwebtoken::get_current_timestamp();
        let writer = claims("user-1", AUDIENCE, "orders:write orders:read");
        let tokens = [
            (hs256(&writer), 201),
            (hs256(&with(writer.clone(), json!({"exp": now - 600}))), 401),
            (hs256_with(OTHER_SECRET, &writer), 401),
            (hs256(&claims("user-1", AUDIENCE, "orders:read")), 403),
            (hs256(&claims("user-2", AUDIENCE, "orders:write")), 403),
        ];
        for (token, status) in &tokens {
            let response = client
                .post(format!("{}/orders", order_processor.url()))
                .bearer_auth(token)
                .json(&order)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), *status, "{format}");
        }
        let refused_by_storage = client
            .get(format!("{storage_url}/books"))
            .bearer_auth(storage_token(OTHER_SECRET))
            .send()
            .await
            .unwrap();
        assert_eq!(refused_by_storage.status(), 401);

        let mut secrets = vec![
            SECRET.to_owned(),
            STORAGE_SECRET.to_owned(),
            token_for_storage.clone(),
            storage_token(OTHER_SECRET),
        ];
        for (token, _) in &tokens {
            secrets.push(token.clone());
            // Each part that is not the common header, so that a token cut short is found too.
            secrets.extend(token.split('.').skip(1).map(str::to_owned));
        }
        let lines: Vec<String> = all_lines(&order_processor)
            .into_iter()
            .chain(all_lines(&storage))
            .collect();
        assert!(
            lines.len() > 15 && lines.iter().any(|line| line.contains("DEBUG")),
            "{format}: the logs at trace level: {lines:?}"
        );
        for line in &lines {
            for secret in &secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "{format}: a secret in {line}"
                );
            }
        }
    }
}
