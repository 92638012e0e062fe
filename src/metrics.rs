//! Prometheus metrics of both services: every metric's name, labels and meaning are here, and
//! each is recorded in one place per concern (the server middleware, the storage adapter's
//! call wrapper, the order flow) through the functions below. `GET /metrics` renders them in
//! the Prometheus text format (see `http/server.rs`).
//!
//! The recorder is process-global: the `metrics` facade takes one recorder per process
//! (`metrics::set_global_recorder` succeeds once), so it is installed on first use by
//! [`handle`] and every server of the process shares it. Tests that start several services in
//! one process therefore see each other's counts, and assert on differences or on labels only
//! they produce. A process runs one service in production, where this never shows.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{LazyLock, Mutex, OnceLock},
    time::Duration,
};

use metrics::{Counter, Gauge, Histogram, Label, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use subtle::ConstantTimeEq;

/// The content type of the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of every latency histogram, in seconds: requests and storage calls take from
/// a fifth of a millisecond (a cached read) to the 5 s deadline and a little past it.
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// How often the samples of histograms are folded into their buckets when nobody scrapes:
/// until then they are kept one by one, and memory would grow with every request.
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

const HTTP_REQUESTS: &str = "http_requests_total";
const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
const HTTP_REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
const HTTP_REQUESTS_REFUSED: &str = "http_requests_refused_total";
const ORDERS: &str = "orders_total";
const ORDER_CANCELS: &str = "order_cancels_total";
const ORDERS_RECOVERED: &str = "orders_recovered_total";
const STORAGE_CALLS: &str = "storage_calls_total";
const STORAGE_CALL_DURATION: &str = "storage_call_duration_seconds";
const STORAGE_CALL_RETRIES: &str = "storage_call_retries_total";
const STORAGE_BREAKER_TRANSITIONS: &str = "storage_circuit_breaker_transitions_total";
const STORAGE_BREAKER_REJECTIONS: &str = "storage_circuit_breaker_rejections_total";

/// The recorder's handle, installing the recorder on the first call. Returns `None` when
/// another recorder was installed first (by a program that embeds the services), which then
/// receives the metrics instead.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .expect("the bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    // Present from the start, so that a dashboard shows 0 rather than no data
                    // before the first request.
                    gauge!(HTTP_REQUESTS_IN_FLIGHT).set(0.0);
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics go to another recorder; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Installs the recorder on a thread of its own, for a binary to call first thing: the
/// recorder's clock (quanta's) calibrates itself against the system clock on first use, which
/// takes 0.6 to 2 ms of busy waiting, and up to its 200 ms limit when other work preempts it.
/// Begun here, it runs while the service reads its configuration and opens its store, and the
/// [`handle`] call before serving waits only for what is left of it.
pub fn install_in_background() {
    std::thread::spawn(|| {
        handle();
    });
}

/// The `# HELP` lines.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "Requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request's head to its answer, by route template, method and status"
    );
    describe_gauge!(
        HTTP_REQUESTS_IN_FLIGHT,
        "Requests in progress, the health endpoints included"
    );
    describe_counter!(
        HTTP_REQUESTS_REFUSED,
        "Requests and connections the service refused on its own limits, by reason"
    );
    describe_counter!(
        ORDERS,
        "Orders placed, by outcome; replayed=\"true\" for a keyed retry answered with an earlier outcome"
    );
    describe_counter!(ORDER_CANCELS, "Cancels, by outcome");
    describe_counter!(
        ORDERS_RECOVERED,
        "Pending orders the recovery task found, by outcome"
    );
    describe_counter!(
        STORAGE_CALLS,
        "Calls to the Storage Service, retries included in one call, by operation and outcome"
    );
    describe_histogram!(
        STORAGE_CALL_DURATION,
        Unit::Seconds,
        "Time of a call to the Storage Service, retries and backoff included, by operation and outcome"
    );
    describe_counter!(
        STORAGE_CALL_RETRIES,
        "Attempts at a Storage Service call after its first, by operation"
    );
    describe_counter!(
        STORAGE_BREAKER_TRANSITIONS,
        "Times the circuit breaker of the Storage Service client opened or closed, by the state it entered"
    );
    describe_counter!(
        STORAGE_BREAKER_REJECTIONS,
        "Attempts the open circuit breaker held back, by operation"
    );
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Folds the histograms' samples into their buckets; see [`UPKEEP_PERIOD`].
pub fn upkeep() {
    if let Some(handle) = handle() {
        handle.run_upkeep();
    }
}

/// One answered request. `route` is a route template or `unmatched`, never a raw path, and
/// `method` one of a closed set (see [`method_label`]), so that no client can add series.
pub fn request_answered(route: &'static str, method: &'static str, status: u16, took: Duration) {
    static REQUESTS: LazyLock<TimedSeries<(&str, &str, u16)>> =
        LazyLock::new(|| TimedSeries::new(HTTP_REQUESTS, HTTP_REQUEST_DURATION));
    REQUESTS.record((route, method, status), took, |(route, method, status)| {
        vec![
            Label::new("route", route),
            Label::new("method", method),
            Label::new("status", status.to_string()),
        ]
    });
}

/// The label of a request method: the standard methods by name, anything else `other`.
pub fn method_label(method: &poem::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Counts a request in progress until dropped, so that a request whose client went away is
/// counted out as well.
pub struct InFlight(());

impl InFlight {
    pub fn enter() -> Self {
        in_flight().increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
    }
}

fn in_flight() -> &'static Gauge {
    static IN_FLIGHT: LazyLock<Gauge> = LazyLock::new(|| {
        handle();
        gauge!(HTTP_REQUESTS_IN_FLIGHT)
    });
    &IN_FLIGHT
}

/// A counter and a histogram with the same labels: each observation is counted in the one and
/// its duration recorded in the other.
struct Timed {
    count: Counter,
    duration: Histogram,
}

/// The series of a counter and a histogram by label values, registered on the first use of
/// each set of values and kept. Asking the recorder for a series by name and labels builds
/// its key, hashes it and looks it up under a lock, for each of the pair: 2,700 instructions
/// a storage call, where a look-up here and the recording take 650. The label values come
/// from closed sets, so that the map holds no more entries than the recorder holds series.
struct TimedSeries<K> {
    counter: &'static str,
    histogram: &'static str,
    handles: Mutex<HashMap<K, Timed, foldhash::fast::RandomState>>,
}

impl<K: Copy + Eq + Hash> TimedSeries<K> {
    fn new(counter: &'static str, histogram: &'static str) -> Self {
        Self {
            counter,
            histogram,
            handles: Mutex::new(HashMap::default()),
        }
    }

    /// Counts an observation that `took` in the series of `key`, registered with
    /// `labels(key)` on its first use.
    fn record(&self, key: K, took: Duration, labels: impl FnOnce(K) -> Vec<Label>) {
        let mut handles = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let series = handles.entry(key).or_insert_with(|| {
            // A handle taken before the recorder is installed would record nowhere, for
            // good: install it first.
            handle();
            let labels = labels(key);
            Timed {
                count: counter!(self.counter, labels.clone()),
                duration: histogram!(self.histogram, labels),
            }
        });
        series.count.increment(1);
        series.duration.record(took.as_secs_f64());
    }
}

/// What the service refused on its own limits, before or instead of the work asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `503`: too many requests in progress.
    Overloaded,
    /// `503`: the request ran past its deadline.
    DeadlineExceeded,
    /// `413`: a body over the limit.
    BodyTooLarge,
    /// `414`: a request target over the limit.
    UriTooLong,
    /// `431`: a head over the limit, answered by the application or by the HTTP parser.
    HeadersTooLarge,
    /// `408`: the body did not arrive in time.
    RequestTimeout,
    /// The connection was closed: its request head did not arrive in time.
    HeadTimeout,
    /// `400` from the HTTP parser: a head it cannot read.
    MalformedHead,
    /// A connection closed at once: every open connection had a request in progress.
    ConnectionLimit,
    /// A connection that spoke HTTP/2, answered with `GOAWAY`.
    Http2,
    /// `429`: an order of a user past `ORDERS_PER_USER_PER_MINUTE`.
    Rate,
    /// `401`: a protected operation without a valid bearer token.
    Unauthenticated,
    /// `403`: a valid token without a scope the operation needs.
    Forbidden,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Overloaded => "overloaded",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::BodyTooLarge => "body_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::HeadTimeout => "head_timeout",
            Self::MalformedHead => "malformed_head",
            Self::ConnectionLimit => "connection_limit",
            Self::Http2 => "http2",
            Self::Rate => "rate",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
        }
    }
}

pub fn refused(refusal: Refusal) {
    counter!(HTTP_REQUESTS_REFUSED, "reason" => refusal.label()).increment(1);
}

/// An order request's outcome: the status the order ended in, or why it reached no end.
pub fn order_placed(outcome: &'static str, replayed: bool) {
    let replayed = if replayed { "true" } else { "false" };
    counter!(ORDERS, "outcome" => outcome, "replayed" => replayed).increment(1);
}

pub fn order_cancel(outcome: &'static str) {
    counter!(ORDER_CANCELS, "outcome" => outcome).increment(1);
}

pub fn order_recovered(outcome: &'static str) {
    counter!(ORDERS_RECOVERED, "outcome" => outcome).increment(1);
}

/// One call of the storage adapter, its retries included; `outcome` is `ok` or the kind of
/// its error.
pub fn storage_call(operation: &'static str, outcome: &'static str, took: Duration) {
    static CALLS: LazyLock<TimedSeries<(&str, &str)>> =
        LazyLock::new(|| TimedSeries::new(STORAGE_CALLS, STORAGE_CALL_DURATION));
    CALLS.record((operation, outcome), took, |(operation, outcome)| {
        vec![
            Label::new("operation", operation),
            Label::new("outcome", outcome),
        ]
    });
}

pub fn storage_retry(operation: &'static str) {
    counter!(STORAGE_CALL_RETRIES, "operation" => operation).increment(1);
}

/// The circuit breaker entered `state`: `open` or `closed`.
pub fn storage_breaker_entered(state: &'static str) {
    counter!(STORAGE_BREAKER_TRANSITIONS, "state" => state).increment(1);
}

pub fn storage_breaker_rejected(operation: &'static str) {
    counter!(STORAGE_BREAKER_REJECTIONS, "operation" => operation).increment(1);
}

/// The bearer token that `GET /metrics` asks for (`METRICS_TOKEN_FILE`). Neither `Debug` nor
/// any other way of printing it shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// A token from the text of its file; `None` when the file holds nothing but white
    /// space. The line end that files usually carry is not part of the token.
    pub fn from_file_text(text: &str) -> Option<Self> {
        let token = text.trim();
        (!token.is_empty()).then(|| Self(token.to_owned()))
    }

    /// Whether an `Authorization` header value presents this token as `Bearer <token>`.
    /// The comparison takes the same time wherever the first difference is, so that the
    /// token cannot be guessed byte by byte from the answer's timing.
    pub fn admits(&self, authorization: &[u8]) -> bool {
        let Some(space) = authorization.iter().position(|&byte| byte == b' ') else {
            return false;
        };
        let (scheme, presented) = authorization.split_at(space);
        scheme.eq_ignore_ascii_case(b"bearer")
            && bool::from(presented.trim_ascii().ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_admitted_only_as_a_bearer_token_with_the_same_bytes() {
        let token = MetricsToken::from_file_text("s3cret\n").unwrap();
        assert!(token.admits(b"Bearer s3cret"));
        assert!(token.admits(b"bearer s3cret"));
        assert!(!token.admits(b"Bearer s3cre"));
        assert!(!token.admits(b"Bearer s3cretX"));
        assert!(!token.admits(b"Basic s3cret"));
        assert!(!token.admits(b"s3cret"));
        assert!(!token.admits(b""));
    }

    #[test]
    fn a_file_of_white_space_holds_no_token_and_debug_never_shows_one() {
        assert!(MetricsToken::from_file_text(" \n").is_none());
        let token = MetricsToken::from_file_text("s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn each_set_of_labels_keeps_its_own_series_from_its_first_use_on() {
        // The first use may come before anything asked for the recorder: it must still record.
        for _ in 0..2 {
            storage_call("series_test", "ok", Duration::from_millis(1));
        }
        storage_call("series_test", "failed", Duration::from_millis(1));
        request_answered("/series-test", "GET", 418, Duration::from_millis(1));
        let text = render();
        for line in [
            r#"storage_calls_total{operation="series_test",outcome="ok"} 2"#,
            r#"storage_calls_total{operation="series_test",outcome="failed"} 1"#,
            r#"storage_call_duration_seconds_count{operation="series_test",outcome="ok"} 2"#,
            r#"http_requests_total{route="/series-test",method="GET",status="418"} 1"#,
            r#"http_request_duration_seconds_count{route="/series-test",method="GET",status="418"} 1"#,
        ] {
            assert!(text.lines().any(|shown| shown == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&poem::http::Method::POST), "POST");
        let made_up = poem::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}
