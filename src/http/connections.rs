//! Connections: accepted within a bound, served with HTTP/1.1 by hyper, and closed when the
//! client stalls. What happens inside a request (deadline, body timeout, load shedding) is
//! the application's middleware's part, in `server.rs`.
//!
//! HTTP/2 is off. The callers (the Books Service through the SDK, the kubelet's probes) speak
//! HTTP/1.1 inside the cluster, where multiplexing gains nothing; HTTP/2 would add a second
//! way for one connection to hold many requests (20,000 streams cost 300 MiB before the
//! streams were bounded), and its own floods (rapid reset, CONTINUATION) to defend against.
//! A client that opens with the HTTP/2 preface gets a `GOAWAY` with `HTTP_1_1_REQUIRED`.
//!
//! A head hyper cannot parse, or one past `ServerLimits::parser_header_bytes`, is answered by
//! hyper itself (`400` or `431`) with an empty body: hyper 1 writes that answer inside its
//! connection (`Conn::on_parse_error`) before it returns the error, and has no hook to give it
//! a body. What the server can do is log each such refusal once, below. Heads that parse and
//! only break the configured limits reach the application, which answers them with Problems.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use poem::{
    Endpoint, Response,
    endpoint::BoxEndpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use super::limits::ServerLimits;
use crate::metrics::{self, Refusal};

/// Pause after a failed accept, so that running out of file descriptors does not turn the
/// accept loop into a busy loop while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The server's connection preface (an empty SETTINGS frame), then a GOAWAY frame with last
/// stream 0 and error code `HTTP_1_1_REQUIRED` (RFC 9113, sections 3.4, 6.8 and 7).
const HTTP2_REFUSAL: [u8; 26] = [
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, no parameters
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, 8 bytes on stream 0
    0, 0, 0, 0, // last stream id
    0, 0, 0, 0xd, // HTTP_1_1_REQUIRED
];

/// Accepts connections on `listener` and serves `endpoint` on each until `shutdown`
/// completes; then stops accepting, lets the requests in progress finish for up to
/// `drain_timeout`, and closes what is left.
pub(super) async fn serve(
    listener: TcpListener,
    endpoint: BoxEndpoint<'static, Response>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let endpoint = Arc::new(endpoint);
    let limits = Arc::new(limits);
    let open = Arc::new(OpenConnections::new(limits.max_connections));
    let draining = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = connections.join_next() => {
                if let Err(err) = ended {
                    tracing::error!(error = %err, "a connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match open.admit(peer) {
                    Some(connection) => {
                        connections.spawn(serve_connection(
                            stream,
                            connection,
                            endpoint.clone(),
                            limits.clone(),
                            draining.clone(),
                        ));
                    }
                    None => {
                        metrics::refused(Refusal::ConnectionLimit);
                        tracing::warn!(
                            peer = %peer,
                            "refused a connection: every open connection has a request in progress"
                        );
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    draining.cancel();
    let drained = tokio::time::timeout(drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "drain timeout: closing the connections still open"
        );
        connections.shutdown().await;
    }
}

/// Where a connection stands, which decides how long it may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is on its way since this instant: the header-read timeout runs.
    Head(Instant),
    /// A request is in the application, which bounds it with its deadline.
    Request,
    /// The last answer was handed over at this instant and nothing has arrived since: the
    /// idle timeout runs.
    Idle(Instant),
}

/// The shared state of one open connection.
struct Connection {
    id: u64,
    peer: SocketAddr,
    /// Set by the connection's task up to three times a request; read by its watchdog
    /// ([`stalled`]) when that wakes, and by [`OpenConnections::admit`].
    phase: Mutex<Phase>,
    evicted: Notify,
}

impl Connection {
    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }
}

/// The open connections, oldest first, and the bound on their number.
struct OpenConnections {
    max: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

impl OpenConnections {
    fn new(max: usize) -> Self {
        Self {
            max,
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers a new connection. At the bound it takes the place of the oldest connection
    /// without a request in the application (a stalled head or an idle keep-alive: closing
    /// either loses no work); when every connection has one, the new one is refused.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Registered> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let oldest_silent = open
                .iter()
                .find(|(_, connection)| connection.phase() != Phase::Request)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = open.remove(&oldest_silent) {
                evicted.evicted.notify_one();
            }
        }
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            phase: Mutex::new(Phase::Head(Instant::now())),
            evicted: Notify::new(),
        });
        open.insert(connection.id, connection.clone());
        Some(Registered {
            open: self.clone(),
            connection,
        })
    }
}

/// A connection counted among the open ones until it is dropped.
struct Registered {
    open: Arc<OpenConnections>,
    connection: Arc<Connection>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.connection.id);
    }
}

/// How a connection ended.
enum Ended {
    /// By hyper: the client closed it, or hyper refused what it sent.
    Served(hyper::Result<()>),
    /// By the server: a request head did not arrive in time.
    HeadTimeout,
    /// By the server: nothing arrived for the idle timeout.
    IdleTimeout,
    /// By the server, to make room for a new connection.
    Evicted,
}

async fn serve_connection(
    stream: TcpStream,
    registered: Registered,
    endpoint: Arc<BoxEndpoint<'static, Response>>,
    limits: Arc<ServerLimits>,
    draining: CancellationToken,
) {
    let connection = registered.connection.clone();
    let peer = connection.peer;
    let Ok(local) = stream.local_addr() else {
        // The socket is closed already.
        return;
    };
    let mut io = TokioIo::new(Watched {
        stream,
        connection: connection.clone(),
    });
    let service = hyper::service::service_fn({
        let connection = connection.clone();
        move |request: hyper::Request<Incoming>| {
            let endpoint = endpoint.clone();
            let in_request = InRequest::enter(connection.clone());
            async move {
                let request = poem::Request::from((
                    request,
                    LocalAddr(local.into()),
                    RemoteAddr(peer.into()),
                    Scheme::HTTP,
                ));
                let response = endpoint.get_response(request).await;
                drop(in_request);
                Ok::<_, Infallible>(hyper::Response::from(response))
            }
        }
    });
    let mut builder = http1::Builder::new();
    builder
        // The watchdog below times heads and idle periods apart; hyper's own timer would
        // count the idle time between requests as header time.
        .header_read_timeout(None)
        .max_header_size(limits.parser_header_bytes());
    let served = builder.serve_connection(&mut io, service);
    tokio::pin!(served);
    let stalled = stalled(&connection, &limits);
    tokio::pin!(stalled);
    let mut drain_started = false;
    let ended = loop {
        tokio::select! {
            result = served.as_mut() => break Ended::Served(result),
            ended = stalled.as_mut() => break ended,
            () = connection.evicted.notified() => break Ended::Evicted,
            () = draining.cancelled(), if !drain_started => {
                drain_started = true;
                served.as_mut().graceful_shutdown();
            }
        }
    };
    match ended {
        Ended::Served(Ok(())) => {}
        Ended::Served(Err(err)) if err.is_parse_version_h2() => {
            metrics::refused(Refusal::Http2);
            tracing::warn!(peer = %peer, "refused an HTTP/2 connection: this server speaks HTTP/1.1 only");
            // 26 bytes on a connection with no answer under way: they fit in the socket's
            // buffer at once. A client that is gone already just misses them.
            let _ = io.inner().stream.try_write(&HTTP2_REFUSAL);
        }
        Ended::Served(Err(err)) if err.is_parse() => {
            // Heads are cut at 64 KiB at most (`ServerLimits::parser_header_bytes`), below
            // the target length at which hyper would answer 414 instead.
            let (status, refusal) = if err.is_parse_too_large() {
                (431, Refusal::HeadersTooLarge)
            } else {
                (400, Refusal::MalformedHead)
            };
            metrics::refused(refusal);
            tracing::warn!(
                peer = %peer,
                status,
                reason = %err,
                "refused a request the HTTP parser cannot read"
            );
        }
        Ended::Served(Err(err)) => {
            tracing::debug!(peer = %peer, error = %err, "connection ended with an error");
        }
        Ended::HeadTimeout => {
            metrics::refused(Refusal::HeadTimeout);
            tracing::info!(peer = %peer, timeout = ?limits.header_read_timeout, "closed a connection whose request head did not arrive in time");
        }
        Ended::IdleTimeout => {
            tracing::debug!(peer = %peer, "closed an idle connection");
        }
        Ended::Evicted => {
            tracing::info!(peer = %peer, "closed a connection without a request in progress to make room for a new one");
        }
    }
}

/// Completes when the connection has been silent too long for its phase.
///
/// It is not told when the phase changes, which would wake it three times a request: it
/// looks at the phase when it wakes. It sleeps until the deadline of the phase it sees, but
/// never longer than `header_read_timeout`. A head that starts while it sleeps has a
/// deadline at least that far off, so it wakes before it; the deadline of an idle period
/// that starts meanwhile lies later still.
async fn stalled(connection: &Connection, limits: &ServerLimits) -> Ended {
    loop {
        let now = Instant::now();
        let deadline = match connection.phase() {
            Phase::Head(since) => Some((since + limits.header_read_timeout, Ended::HeadTimeout)),
            Phase::Idle(since) => Some((since + limits.idle_timeout, Ended::IdleTimeout)),
            Phase::Request => None,
        };
        let mut wake = now + limits.header_read_timeout;
        if let Some((until, ended)) = deadline {
            if until <= now {
                return ended;
            }
            wake = wake.min(until);
        }
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// Marks a connection as having a request in the application, until dropped.
struct InRequest(Arc<Connection>);

impl InRequest {
    fn enter(connection: Arc<Connection>) -> Self {
        connection.set_phase(Phase::Request);
        Self(connection)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.set_phase(Phase::Idle(Instant::now()));
    }
}

/// The socket of a connection, which notes when the first bytes of a request arrive after
/// an idle period.
struct Watched {
    stream: TcpStream,
    connection: Arc<Connection>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut phase = self
                .connection
                .phase
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Phase::Idle(_) = *phase {
                *phase = Phase::Head(Instant::now());
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises this process's soft limit on open files to its hard limit: containers often start
/// with a soft limit of 1024, below the connections the server is meant to hold. Warns when
/// the limit stays too low for `max_connections`.
#[cfg(unix)]
pub(super) fn raise_open_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // Room for the storage connections, the database and the listener besides.
    let needed = max_connections as u64 + 256;
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit is below SERVER_MAX_CONNECTIONS plus 256: new connections will fail before the bound is reached"
        );
    }
}
