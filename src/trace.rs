//! The trace of the request being served (W3C Trace Context) and its request id, carried with
//! the task that serves it, as `crate::deadline` carries the deadline, so that every call to
//! the Storage Service on its way sends them on and both services' logs can be joined by
//! trace id.

use std::fmt;

use poem::http::{HeaderMap, HeaderName, HeaderValue};

/// The W3C Trace Context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request id header, taken from the caller when it has a safe form and always answered.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The one `traceparent` version this service reads and writes.
const VERSION: &str = "00";

/// The `sampled` bit of the trace flags; the other bits of version 00 are not defined.
const SAMPLED: u8 = 0x01;

/// A trace id: 16 random bytes, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(u128);

/// A span id: 8 random bytes, never all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId(u64);

impl TraceId {
    fn random() -> Self {
        Self(fastrand::u128(1..))
    }
}

impl SpanId {
    fn random() -> Self {
        Self(fastrand::u64(1..))
    }
}

impl TraceId {
    /// The id as 32 lower-case hex digits.
    fn hex(self) -> [u8; 32] {
        let mut digits = [0; 32];
        write_hex(&mut digits, self.0);
        digits
    }
}

impl SpanId {
    /// The id as 16 lower-case hex digits.
    fn hex(self) -> [u8; 16] {
        let mut digits = [0; 16];
        write_hex(&mut digits, self.0.into());
        digits
    }
}

/// Writes the low `digits.len()` hex digits of `value` into `digits`, in lower case, most
/// significant first. By hand rather than with `{:032x}`: the formatter's padded hex of a
/// `u128` cost a request about a thousand instructions, and every request writes three ids.
fn write_hex(digits: &mut [u8], mut value: u128) {
    for digit in digits.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Hex digits as text.
fn hex_text(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).expect("hex digits are ASCII")
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(hex_text(&self.hex()))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(hex_text(&self.hex()))
    }
}

/// A valid `traceparent` as a caller sent it: the trace it belongs to and the caller's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

impl Traceparent {
    /// Reads `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` as the W3C Trace Context
    /// recommendation writes it: lower-case hex only, neither id all zeros. Anything else,
    /// another version included, is `None`: the caller's trace is then not continued.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split('-');
        let (version, trace_id, parent_id, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if fields.next().is_some() || version != VERSION {
            return None;
        }
        let trace_id = hex(trace_id, 32).and_then(|id| u128::from_str_radix(id, 16).ok())?;
        let parent_id = hex(parent_id, 16).and_then(|id| u64::from_str_radix(id, 16).ok())?;
        let flags = hex(flags, 2).and_then(|flags| u8::from_str_radix(flags, 16).ok())?;
        if trace_id == 0 || parent_id == 0 {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }

    /// The `traceparent` of a request's headers; a missing, repeated or malformed one is
    /// `None`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(value.to_str().ok()?)
    }
}

/// `field` when it is exactly `len` lower-case hex digits. `from_str_radix` alone would also
/// take a sign and upper case.
fn hex(field: &str, len: usize) -> Option<&str> {
    (field.len() == len
        && field
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(field)
}

/// This service's part of a trace: the trace it belongs to, the span it opened for its
/// part, and the span of the caller it continues, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_id: Option<SpanId>,
    pub sampled: bool,
}

impl TraceContext {
    /// A span of the caller's trace, or the first span of a new trace when the caller sent
    /// no valid `traceparent`.
    pub fn continuing(caller: Option<Traceparent>) -> Self {
        match caller {
            Some(caller) => Self {
                trace_id: caller.trace_id,
                span_id: SpanId::random(),
                parent_id: Some(caller.parent_id),
                sampled: caller.flags & SAMPLED != 0,
            },
            None => Self::new_trace(),
        }
    }

    /// The first span of a new trace. Sampled: its logs are written whatever the flag says,
    /// and a collector downstream should keep it too.
    pub fn new_trace() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            sampled: true,
        }
    }

    /// Fills in the `trace_id`, `span_id` and `parent_id` fields of `span`, declared empty
    /// where it was created, so that every line logged within it names the trace.
    pub fn record(&self, span: &tracing::Span) {
        span.record("trace_id", tracing::field::display(self.trace_id));
        span.record("span_id", tracing::field::display(self.span_id));
        if let Some(parent_id) = self.parent_id {
            span.record("parent_id", tracing::field::display(parent_id));
        }
    }

    /// The `traceparent` of a call made within this span, `00-<trace id>-<span id>-<flags>`:
    /// same trace, this span as parent.
    pub fn traceparent(&self) -> HeaderValue {
        let mut value = [b'-'; 55];
        value[..2].copy_from_slice(VERSION.as_bytes());
        value[3..35].copy_from_slice(&self.trace_id.hex());
        value[36..52].copy_from_slice(&self.span_id.hex());
        write_hex(
            &mut value[53..],
            (if self.sampled { SAMPLED } else { 0 }).into(),
        );
        HeaderValue::from_bytes(&value).expect("a traceparent is hex digits and dashes")
    }
}

/// The ids under which `span` is exported when spans are (see `crate::telemetry`): the
/// exporter gives the span its id, under the caller's trace, and what is sent on and logged
/// must name that span. `trace` as it is when nothing is exported.
#[cfg(feature = "otlp")]
pub fn exported(span: &tracing::Span, trace: TraceContext) -> TraceContext {
    use opentelemetry::trace::{self as otel, TraceContextExt};
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(parent_id) = trace.parent_id {
        let flags = if trace.sampled {
            otel::TraceFlags::SAMPLED
        } else {
            otel::TraceFlags::default()
        };
        let caller = otel::SpanContext::new(
            otel::TraceId::from(trace.trace_id.0),
            otel::SpanId::from(parent_id.0),
            flags,
            true,
            otel::TraceState::default(),
        );
        // Refused only when the span is not exported, which the check below catches.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(caller));
    }
    let context = span.context();
    let exported = context.span().span_context().clone();
    if !exported.is_valid() {
        return trace;
    }
    TraceContext {
        trace_id: TraceId(u128::from_be_bytes(exported.trace_id().to_bytes())),
        span_id: SpanId(u64::from_be_bytes(exported.span_id().to_bytes())),
        parent_id: trace.parent_id,
        sampled: exported.is_sampled(),
    }
}

/// Without the `otlp` feature nothing is exported: the ids are this service's own.
#[cfg(not(feature = "otlp"))]
pub fn exported(_: &tracing::Span, trace: TraceContext) -> TraceContext {
    trace
}

/// The log span of a request, which every line logged while it is served carries, and the
/// request's part of the trace as it is sent on (see `exported`).
#[cfg(not(feature = "otlp"))]
pub fn request_span(request_id: &str, trace: TraceContext) -> (tracing::Span, TraceContext) {
    // Nothing is exported, so the ids are known before the span exists: given to it at once,
    // they cost the log layer one pass, where recording each afterwards costs one pass each.
    // Given as text, which the layer copies, rather than as `Display` values it would format.
    let (trace_id, span_id) = (trace.trace_id.hex(), trace.span_id.hex());
    let parent_id = trace.parent_id.map(SpanId::hex);
    let span = tracing::info_span!(
        "request",
        request_id,
        trace_id = hex_text(&trace_id),
        span_id = hex_text(&span_id),
        parent_id = parent_id.as_ref().map(|id| hex_text(id)),
    );
    (span, trace)
}

/// The log span of a request, which every line logged while it is served carries, and the
/// request's part of the trace as it is sent on (see `exported`).
#[cfg(feature = "otlp")]
pub fn request_span(request_id: &str, trace: TraceContext) -> (tracing::Span, TraceContext) {
    // The exporter gives the span its ids once the span exists: they are recorded after.
    let span = tracing::info_span!(
        "request",
        request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_id = tracing::field::Empty,
    );
    let trace = exported(&span, trace);
    trace.record(&span);
    (span, trace)
}

/// What identifies the request being served on every call it makes: the headers that carry
/// its trace and request id, written once here rather than on each call, as the calls of an
/// order would each format the same `traceparent` again.
#[derive(Debug)]
pub struct RequestContext {
    traceparent: HeaderValue,
    request_id: Option<HeaderValue>,
}

impl RequestContext {
    /// The context of work within `trace`; `request_id` is the id of the request being
    /// served, a safe one (see [`is_safe_request_id`]), or none for work no request started.
    pub fn new(trace: TraceContext, request_id: Option<&HeaderValue>) -> Self {
        Self {
            traceparent: trace.traceparent(),
            request_id: request_id.cloned(),
        }
    }
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Runs `work` with `context` as the context of every call it makes. Not an `async fn`, which
/// would hold `work` beside the scope that holds it too, doubling the future's size.
pub fn within<F: Future>(context: RequestContext, work: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, work)
}

/// Sets on an outgoing call the headers that carry the current context: `traceparent` and
/// `x-request-id`. A call made outside any request starts a trace of its own.
pub fn inject(headers: &mut HeaderMap) {
    let within_a_request = CURRENT.try_with(|context| {
        headers.insert(TRACEPARENT, context.traceparent.clone());
        if let Some(id) = &context.request_id {
            headers.insert(REQUEST_ID, id.clone());
        }
    });
    if within_a_request.is_err() {
        headers.insert(TRACEPARENT, TraceContext::new_trace().traceparent());
    }
}

/// A request id safe to log and to echo: `[A-Za-z0-9._-]{1,128}`.
pub fn is_safe_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The caller's request id when it has a safe form, a fresh one otherwise.
pub fn request_id_from(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_safe_request_id(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let parsed = Traceparent::parse(VALID).unwrap();
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 0x01);
        let unsampled = Traceparent::parse(&VALID.replace("-01", "-00")).unwrap();
        assert_eq!(unsampled.flags, 0);
    }

    #[test]
    fn every_malformed_traceparent_is_refused() {
        let refused = [
            ("empty", String::new()),
            ("another version", VALID.replacen("00", "01", 1)),
            ("the forbidden version", VALID.replacen("00", "ff", 1)),
            ("a longer version", format!("0{VALID}")),
            ("extra fields", format!("{VALID}-extra")),
            ("a trailing dash", format!("{VALID}-")),
            ("missing flags", VALID[..52].to_owned()),
            (
                "all-zero trace id",
                VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            ),
            (
                "all-zero parent id",
                VALID.replace("00f067aa0ba902b7", &"0".repeat(16)),
            ),
            (
                "short trace id",
                VALID.replace(
                    "4bf92f3577b34da6a3ce929d0e0e4736",
                    "4bf92f3577b34da6a3ce929d0e0e473",
                ),
            ),
            (
                "long trace id",
                VALID.replace(
                    "4bf92f3577b34da6a3ce929d0e0e4736",
                    "4bf92f3577b34da6a3ce929d0e0e47361",
                ),
            ),
            (
                "short parent id",
                VALID.replace("00f067aa0ba902b7", "00f067aa0ba902b"),
            ),
            (
                "long parent id",
                VALID.replace("00f067aa0ba902b7", "00f067aa0ba902b71"),
            ),
            ("one-digit flags", VALID.replace("-01", "-1")),
            ("three-digit flags", VALID.replace("-01", "-001")),
            ("upper-case hex", VALID.replace("4bf9", "4BF9")),
            ("upper-case flags", VALID.replace("-01", "-0A")),
            ("non-hex trace id", VALID.replace("4bf9", "4bg9")),
            ("non-hex parent id", VALID.replace("00f0", "00x0")),
            ("non-hex flags", VALID.replace("-01", "-0z")),
            (
                "a signed parent id",
                VALID.replace("00f067aa0ba902b7", "+0f067aa0ba902b7"),
            ),
            ("spaces", format!(" {VALID}")),
            ("another separator", VALID.replace('-', "_")),
        ];
        for (what, value) in refused {
            assert_eq!(Traceparent::parse(&value), None, "{what}: {value}");
        }
    }

    #[test]
    fn a_repeated_traceparent_header_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(Traceparent::from_headers(&headers).is_some());
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(Traceparent::from_headers(&headers), None);
        assert_eq!(Traceparent::from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn a_span_continues_its_callers_trace_under_an_id_of_its_own() {
        let caller = Traceparent::parse(VALID).unwrap();
        let span = TraceContext::continuing(Some(caller));
        assert_eq!(span.trace_id, caller.trace_id);
        assert_eq!(span.parent_id, Some(caller.parent_id));
        assert_ne!(span.span_id, caller.parent_id);
        assert!(span.sampled);
        let sent = Traceparent::from_headers(&sent_headers(span)).unwrap();
        assert_eq!(sent.trace_id, caller.trace_id);
        assert_eq!(sent.parent_id, span.span_id);
        assert_eq!(sent.flags, 0x01);

        let unsampled = Traceparent::parse(&VALID.replace("-01", "-00"));
        let span = TraceContext::continuing(unsampled);
        assert!(span.traceparent().to_str().unwrap().ends_with("-00"));
    }

    fn sent_headers(trace: TraceContext) -> HeaderMap {
        HeaderMap::from_iter([(TRACEPARENT, trace.traceparent())])
    }

    #[test]
    fn a_traceparent_is_written_in_lower_case_hex_with_its_leading_zeros() {
        let trace = TraceContext {
            trace_id: TraceId(0x0bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            span_id: SpanId(0x00f0_67aa_0ba9_02b7),
            parent_id: None,
            sampled: false,
        };
        assert_eq!(
            trace.traceparent(),
            "00-0bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
        let sampled = TraceContext {
            sampled: true,
            ..trace
        };
        assert!(sampled.traceparent().to_str().unwrap().ends_with("-01"));
        assert_eq!(
            trace.trace_id.to_string(),
            "0bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format!("[{:>18}]", trace.span_id), "[  00f067aa0ba902b7]");
    }

    #[test]
    fn without_a_caller_a_new_sampled_trace_starts() {
        let (one, two) = (
            TraceContext::continuing(None),
            TraceContext::continuing(None),
        );
        assert_ne!(one.trace_id, two.trace_id);
        assert_eq!(one.parent_id, None);
        assert!(
            Traceparent::from_headers(&sent_headers(one)).is_some_and(|sent| sent.flags == 0x01)
        );
    }

    #[tokio::test]
    async fn calls_carry_the_current_context_and_outside_one_a_trace_of_their_own() {
        let trace = TraceContext::new_trace();
        let context = RequestContext::new(trace, Some(&HeaderValue::from_static("order-17")));
        let headers = within(context, async {
            let mut headers = HeaderMap::new();
            inject(&mut headers);
            headers
        })
        .await;
        assert_eq!(headers[TRACEPARENT], trace.traceparent());
        assert_eq!(headers[REQUEST_ID], "order-17");

        assert!(CURRENT.try_with(|_| ()).is_err());
        let mut outside = HeaderMap::new();
        inject(&mut outside);
        let sent = Traceparent::from_headers(&outside).unwrap();
        assert_ne!(sent.trace_id, trace.trace_id);
        assert!(outside.get(REQUEST_ID).is_none());
    }

    #[test]
    fn request_ids_of_a_safe_form_are_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("Order-17_retry.2"));
        assert_eq!(request_id_from(&headers), "Order-17_retry.2");
        for unsafe_id in ["a b", "abc}:request{request_id=FORGED", &"x".repeat(129)] {
            headers.insert(REQUEST_ID, HeaderValue::from_str(unsafe_id).unwrap());
            let replaced = request_id_from(&headers);
            assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
        }
    }
}
