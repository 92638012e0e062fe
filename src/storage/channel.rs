//! How the generated Storage Service client's requests are sent: over hyper-util's pooled
//! HTTP/1.1 client, with the storage token, rather than through reqwest's own sending.
//!
//! progenitor builds each request with reqwest and hands it to [`Channel::send`] (through
//! `ClientHooks::exec`). reqwest's sending wraps hyper-util's client in tower layers for
//! redirects, retries and timeouts that these calls do not use (the Storage Service answers
//! no redirect; `resilience::call` retries and bounds each attempt), and parses the URL
//! again on the way out and on the way back: under callgrind, the bench's bare forwarder
//! spends 45.9 k instructions a `GET` sending this way, 69.7 k through reqwest.

use std::{sync::Arc, time::Duration};

use hyper_util::{
    client::legacy::{self, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use reqwest::{
    ResponseBuilderExt, StatusCode,
    header::{HOST, HeaderValue},
};

use super::http::{HttpStorageConfig, StorageToken};

/// What the generated client holds for its hooks: the pooled connections to the Storage
/// Service, and the token every request carries, when one is set. Clones share the pool.
#[derive(Debug, Clone)]
pub struct Channel {
    pool: legacy::Client<HttpConnector, reqwest::Body>,
    pub(super) token: Option<Arc<StorageToken>>,
}

impl Default for Channel {
    fn default() -> Self {
        Self::new(&HttpStorageConfig::default())
    }
}

impl Channel {
    /// A pool of connections as `config` sizes it, sending no token.
    pub fn new(config: &HttpStorageConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        // A request is written in one go and waits for its answer: Nagle's algorithm would
        // only hold its last segment back.
        connector.set_nodelay(true);
        // TCP keep-alive as reqwest sets it, so that a pooled connection whose peer vanished
        // without a word is found dead and closed while it is idle.
        connector.set_keepalive(Some(Duration::from_secs(15)));
        connector.set_keepalive_interval(Some(Duration::from_secs(15)));
        connector.set_keepalive_retries(Some(3));
        let pool = legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Self { pool, token: None }
    }

    /// The same pool, sending `token` on every request.
    #[must_use]
    pub fn with_token(self, token: Option<Arc<StorageToken>>) -> Self {
        Self { token, ..self }
    }

    /// Sends `request` and answers what came back. A request that got no answer (a connection
    /// refused, not opened in time, or closed before the answer) comes back as a stand-in answer that carries the failure,
    /// [`Unanswered`], in its extensions, since `ClientHooks::exec` must fail with a
    /// `reqwest::Error`, which only reqwest can make; the `post` hook turns it into an error
    /// before the generated client reads the answer.
    pub async fn send(&self, request: reqwest::Request) -> reqwest::Result<reqwest::Response> {
        // The answer's URL is the request's: reqwest would otherwise parse a placeholder.
        let url = request.url().clone();
        let mut request = hyper::Request::try_from(request)?;
        // hyper-util writes a missing Host header with `format!`; the URL's text holds it
        // already, `host[:port]` without the default port, when it carries no credentials.
        if url.username().is_empty()
            && url.password().is_none()
            && let Ok(host) = HeaderValue::from_str(url.authority())
        {
            request.headers_mut().entry(HOST).or_insert(host);
        }
        let answer = match self.pool.request(request).await {
            Ok(answer) => {
                let (head, body) = answer.into_parts();
                let mut answer = hyper::Response::builder()
                    .status(head.status)
                    .version(head.version)
                    .url(url)
                    .body(reqwest::Body::wrap(body))
                    .expect("a status and version that came as an answer's");
                *answer.headers_mut() = head.headers;
                answer
            }
            Err(err) => return Ok(Unanswered(Arc::new(err)).stand_in(url)),
        };
        Ok(answer.into())
    }
}

/// Why a request got no answer from the Storage Service: hyper-util's error, with its causes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no answer from the Storage Service")]
pub struct Unanswered(#[source] Arc<legacy::Error>);

impl Unanswered {
    /// The failure that `answer` stands in for, when it is a stand-in.
    pub fn of(answer: &reqwest::Response) -> Option<&Self> {
        answer.extensions().get()
    }

    /// A stand-in answer to a request for `url` that carries this failure. Its status, 502,
    /// is a placeholder that the storage client does not read.
    pub fn stand_in(self, url: reqwest::Url) -> reqwest::Response {
        hyper::Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .url(url)
            .extension(self)
            .body(reqwest::Body::default())
            .expect("a fixed status")
            .into()
    }
}
