//! How the generated Storage Service client's requests are sent: over a pool of hyper's
//! HTTP/1.1 connections, with the storage token, rather than through reqwest's own sending.
//!
//! progenitor builds each request with reqwest and hands it to [`Channel::send`] (through
//! `ClientHooks::exec`). reqwest's sending wraps hyper-util's pooled client in tower layers
//! for redirects, retries and timeouts that these calls do not use (the Storage Service
//! answers no redirect; `resilience::call` retries and bounds each attempt), and parses the
//! URL again on the way out and on the way back. hyper-util's pool itself hashes its key with
//! SipHash twice a call, races each checkout against a connect it builds and seldom starts,
//! and spawns a task a call to take the connection back once the answer is read: about 8 k
//! instructions a call. The pool here is a list of idle connections, searched from the most
//! recently used, and an answer's body gives its connection back when it has been read to its
//! end. Under callgrind, the bench's bare forwarder spent 69.7 k instructions a `GET` through
//! reqwest, 45.9 k through hyper-util's pool and 35.6 k through this one.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use reqwest::{
    ResponseBuilderExt, StatusCode, Url,
    header::{HOST, HeaderValue},
};
use tokio::net::TcpStream;

use super::http::{HttpStorageConfig, StorageToken};
use crate::periodic;

/// What the generated client holds for its hooks: the pooled connections to the Storage
/// Service, and the token every request carries, when one is set. Clones share the pool.
#[derive(Debug, Clone)]
pub struct Channel {
    pool: Arc<Pool>,
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
        let pool = Pool {
            idle: Mutex::default(),
            connect_timeout: config.connect_timeout,
            idle_timeout: config.pool_idle_timeout,
            max_idle: config.pool_max_idle_per_host,
            sweeping: AtomicBool::new(false),
        };
        Self {
            pool: Arc::new(pool),
            token: None,
        }
    }

    /// The same pool, sending `token` on every request.
    #[must_use]
    pub fn with_token(self, token: Option<Arc<StorageToken>>) -> Self {
        Self { token, ..self }
    }

    /// Sends `request` and answers what came back. A request that got no answer (a connection
    /// refused, not opened in time, or closed before the answer) comes back as a stand-in
    /// answer that carries the failure, [`Unanswered`], in its extensions, since
    /// `ClientHooks::exec` must fail with a `reqwest::Error`, which only reqwest can make; the
    /// `post` hook turns it into an error before the generated client reads the answer.
    pub async fn send(&self, request: reqwest::Request) -> reqwest::Result<reqwest::Response> {
        // The answer's URL is the request's: reqwest would otherwise parse a placeholder.
        let url = request.url().clone();
        let mut request = hyper::Request::try_from(request)?;
        // The request line names the path and query only (origin form), and the Host header
        // the rest: the URL's text holds it, `host[:port]` without the default port, when the
        // URL carries no credentials.
        if let Some(target) = request.uri().path_and_query().cloned() {
            *request.uri_mut() = target.into();
        }
        if url.username().is_empty()
            && url.password().is_none()
            && let Ok(host) = HeaderValue::from_str(url.authority())
        {
            request.headers_mut().entry(HOST).or_insert(host);
        }
        let answer = match self.pool.send(&url, request).await {
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

/// The idle connections of a [`Channel`], most recently used last, each at most
/// `idle_timeout` old: one that waited longer may be one the server is about to close.
#[derive(Debug)]
struct Pool {
    idle: Mutex<Vec<Idle>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Idle connections kept; one given back beyond them is closed.
    max_idle: usize,
    /// Whether the task that closes the connections left idle too long runs. It starts with
    /// the first connection given back on a Tokio runtime: a pool is made outside any.
    sweeping: AtomicBool,
}

/// A connection, and the `host[:port]` of the URLs it serves, as the URL's text has it.
#[derive(Debug)]
struct Connection {
    sender: SendRequest<reqwest::Body>,
    authority: Arc<str>,
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

impl Pool {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `request` to the server of `url` over an idle connection, or a new one. A
    /// request that a pooled connection could not take (the server closed it as it was
    /// handed out) is sent again: it was never written.
    async fn send(
        self: &Arc<Self>,
        url: &Url,
        mut request: hyper::Request<reqwest::Body>,
    ) -> Result<hyper::Response<Returning>, Failure> {
        loop {
            let (mut connection, reused) = match self.checkout(url.authority()).await {
                Some(connection) => (connection, true),
                None => (self.connect(url).await?, false),
            };
            match connection.sender.try_send_request(request).await {
                Ok(answer) => {
                    return Ok(answer.map(|body| Returning {
                        body,
                        connection: Some((connection, self.clone())),
                    }));
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Failure::Exchange(err.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `authority` that is still open, ready for
    /// a request; the ones found closed or too old on the way are dropped, which closes them.
    async fn checkout(&self, authority: &str) -> Option<Connection> {
        loop {
            let Idle {
                mut connection,
                since,
            } = {
                let mut idle = self.idle();
                let position = idle
                    .iter()
                    .rposition(|idle| &*idle.connection.authority == authority)?;
                idle.remove(position)
            };
            if since.elapsed() > self.idle_timeout || connection.sender.is_closed() {
                continue;
            }
            // Given back as its last answer was read: ready once its connection task has seen
            // the end of that answer too.
            if connection.sender.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// A new connection to the server of `url`, within `connect_timeout`.
    async fn connect(&self, url: &Url) -> Result<Connection, Failure> {
        let port = url.port_or_known_default().ok_or(Failure::NoPort)?;
        let stream = match tokio::time::timeout(self.connect_timeout, open(url, port)).await {
            Ok(stream) => stream.map_err(Failure::Connect)?,
            Err(_) => return Err(Failure::ConnectTimeout(self.connect_timeout)),
        };
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Exchange)?;
        // The connection's failures reach the request that meets them, as errors of its
        // answer.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            authority: url.authority().into(),
        })
    }

    /// Keeps `connection`, whose last answer has been read, for a later request, unless it is
    /// closed or `max_idle` are kept already.
    fn give_back(self: &Arc<Self>, connection: Connection) {
        if connection.sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
        drop(idle);
        if !self.sweeping.load(Ordering::Relaxed)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && !self.sweeping.swap(true, Ordering::AcqRel)
        {
            runtime.spawn(periodic::while_alive(
                Arc::downgrade(self),
                self.idle_timeout,
                Self::drop_expired,
            ));
        }
    }

    /// Closes the connections idle for longer than `idle_timeout`, and forgets those the
    /// server closed.
    fn drop_expired(&self) {
        self.idle().retain(|idle| {
            idle.since.elapsed() <= self.idle_timeout && !idle.connection.sender.is_closed()
        });
    }
}

/// A TCP connection to the host of `url`, at its first address that answers, with
/// TCP_NODELAY: a request is written in one go and waits for its answer, and Nagle's
/// algorithm would only hold its last segment back. TCP keep-alive is set as reqwest sets
/// it, so that a pooled connection whose peer vanished without a word is found dead and
/// closed while it is idle.
async fn open(url: &Url, port: u16) -> io::Result<TcpStream> {
    // An IP address is read as one, without a lookup; an IPv6 one comes in brackets.
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut failure = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for address in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(15))
                    .with_interval(Duration::from_secs(15))
                    .with_retries(3);
                socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
                tracing::debug!(%address, "opened a connection to the Storage Service");
                return Ok(stream);
            }
            Err(err) => failure = err,
        }
    }
    Err(failure)
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the URL names no port")]
    NoPort,
    #[error("cannot connect")]
    Connect(#[source] io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// The connection failed or closed before the answer's head had come.
    #[error("the exchange failed")]
    Exchange(#[source] hyper::Error),
}

/// An answer's body, which gives its connection back to the pool once it has been read to its
/// end. A body dropped before its end takes its connection with it: the rest of the answer
/// would be in the way of the next one.
struct Returning {
    body: Incoming,
    connection: Option<(Connection, Arc<Pool>)>,
}

impl Returning {
    fn give_back(&mut self) {
        if let Some((connection, pool)) = self.connection.take() {
            pool.give_back(connection);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            this.give_back();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

/// Why a request got no answer from the Storage Service, with its causes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no answer from the Storage Service")]
pub struct Unanswered(#[source] Arc<Failure>);

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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// What the test server does with the requests of one connection.
    #[derive(Clone, Copy)]
    enum Serving {
        /// Answers each, and keeps the connection open.
        KeepAlive,
        /// Answers the first, then closes the connection.
        CloseAfterAnswer,
        /// Sends the head and the start of a body longer than it, then waits.
        CutShort,
        /// Answers each with no body, and keeps the connection open.
        Empty,
    }

    /// A server on loopback that serves its `n`th connection as `serving(n)`: its port, the
    /// connections it accepted, and those that their client closed.
    async fn server(serving: fn(usize) -> Serving) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, seen_closed) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let serving = serving(counted.fetch_add(1, Ordering::SeqCst));
                let seen_closed = seen_closed.clone();
                tokio::spawn(async move {
                    let mut buffer = [0; 4096];
                    loop {
                        let mut head = Vec::new();
                        while !head.windows(4).any(|end| end == b"\r\n\r\n") {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => {
                                    seen_closed.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                                Ok(read) => head.extend_from_slice(&buffer[..read]),
                            }
                        }
                        match serving {
                            Serving::KeepAlive => stream.write_all(ANSWER).await.unwrap(),
                            Serving::CloseAfterAnswer => {
                                stream.write_all(ANSWER).await.unwrap();
                                return;
                            }
                            Serving::CutShort => stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
                                .await
                                .unwrap(),
                            Serving::Empty => stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await
                                .unwrap(),
                        }
                    }
                });
            }
        });
        (port, accepted, closed)
    }

    fn get(port: u16) -> reqwest::Request {
        let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        reqwest::Request::new(reqwest::Method::GET, url)
    }

    /// The text of an answer, read to its end.
    async fn read(channel: &Channel, port: u16) -> Bytes {
        let answer = channel.send(get(port)).await.unwrap();
        assert!(
            Unanswered::of(&answer).is_none(),
            "{:?}",
            Unanswered::of(&answer)
        );
        answer.bytes().await.unwrap()
    }

    /// Waits until `count` reaches `expected`, for at most a few seconds.
    async fn until(count: &AtomicUsize, expected: usize) {
        for _ in 0..500 {
            if count.load(Ordering::SeqCst) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), expected);
    }

    #[tokio::test]
    async fn answers_read_to_their_end_leave_their_connection_for_the_next_request() {
        let (port, accepted, _) = server(|_| Serving::KeepAlive).await;
        let channel = Channel::default();
        for _ in 0..3 {
            assert_eq!(read(&channel, port).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_handed_out() {
        let (port, accepted, _) = server(|_| Serving::CloseAfterAnswer).await;
        let channel = Channel::default();
        assert_eq!(read(&channel, port).await, "ok");
        // The connection task sees the server's end of the connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read(&channel, port).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_takes_its_connection_with_it() {
        let (port, accepted, closed) = server(|n| match n {
            0 => Serving::CutShort,
            _ => Serving::KeepAlive,
        })
        .await;
        let channel = Channel::default();
        let answer = channel.send(get(port)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        drop(answer);
        until(&closed, 1).await;
        assert_eq!(read(&channel, port).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_idle_longer_than_the_idle_timeout_is_closed_and_not_reused() {
        let (port, accepted, closed) = server(|_| Serving::KeepAlive).await;
        let channel = Channel::new(&HttpStorageConfig {
            pool_idle_timeout: Duration::from_millis(50),
            ..HttpStorageConfig::default()
        });
        assert_eq!(read(&channel, port).await, "ok");
        // Closed by the pool's upkeep, with no request to find it old.
        until(&closed, 1).await;
        assert!(channel.pool.idle().is_empty());
        assert_eq!(read(&channel, port).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_more_idle_connections_are_kept_than_the_pool_holds() {
        let (port, accepted, closed) = server(|_| Serving::KeepAlive).await;
        let channel = Channel::new(&HttpStorageConfig {
            pool_max_idle_per_host: 1,
            ..HttpStorageConfig::default()
        });
        // Both sent before either is read: two connections.
        let (first, second) = tokio::join!(channel.send(get(port)), channel.send(get(port)));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(first.bytes().await.unwrap(), "ok");
        assert_eq!(second.bytes().await.unwrap(), "ok");
        until(&closed, 1).await;
        assert_eq!(channel.pool.idle().len(), 1);
        assert_eq!(read(&channel, port).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_answer_dropped_outside_any_runtime_gives_its_connection_back() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = Channel::default();
        let answer = runtime.block_on(async {
            let (port, _, _) = server(|_| Serving::Empty).await;
            channel.send(get(port)).await.unwrap()
        });
        // Read to its end as it came, with no body; the upkeep task cannot start here.
        drop(answer);
        assert_eq!(channel.pool.idle().len(), 1);
    }
}
