//! JSON log lines, one object a line, in the shape of tracing-subscriber's JSON format with
//! the event's fields flattened and the current span only:
//!
//! `{"level":"INFO","span":{"name":"request","request_id":"…"},"timestamp":"…","message":"request","status":200}`
//!
//! Written here rather than by json-subscriber, which turns each field of each line into a
//! `serde_json::Value` before writing it: 17 k instructions a line, where this layer writes
//! each value as it is visited, through serde_json's escaping, into one buffer per thread.

use std::{cell::RefCell, fmt, io::Write, ops::Range};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{
    fmt::MakeWriter,
    layer::{Context, Layer},
    registry::LookupSpan,
};

/// A line longer than this gives its buffer back rather than keep it for the next line.
const KEPT_LINE_CAPACITY: usize = 16 * 1024;

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The layer: writes each event as one JSON line to what `make_writer` makes.
pub struct JsonLines<W> {
    make_writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// A span's fields as JSON members, kept in the span for every line logged in it: one buffer
/// of `,"name":value` members, which a line copies whole, rather than a buffer a field, each
/// grown as serde_json wrote into it (a dozen allocations a request's span). A field recorded
/// again replaces its value where it stood.
struct SpanFields {
    json: Vec<u8>,
    /// Each field's name, and where its member lies in `json`.
    members: Vec<(&'static str, Range<usize>)>,
}

impl Default for SpanFields {
    fn default() -> Self {
        // Room for a request's span: its request id and three trace ids.
        Self {
            json: Vec::with_capacity(SPAN_FIELDS_CAPACITY),
            members: Vec::with_capacity(4),
        }
    }
}

/// The bytes a span's fields take before their buffer grows.
const SPAN_FIELDS_CAPACITY: usize = 192;

impl Visit for SpanFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), |json| write_debug(json, value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), |json| write_json(json, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), |json| write_json(json, &value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), |json| write_json(json, &value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), |json| write_json(json, &value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), |json| write_json(json, &value));
    }
}

impl SpanFields {
    /// Writes the member of `name` with the value that `write` writes, in place of the one it
    /// had, if any.
    fn set(&mut self, name: &'static str, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.json.len();
        self.json.push(b',');
        write_json(&mut self.json, name);
        self.json.push(b':');
        write(&mut self.json);
        let Some(index) = self.members.iter().position(|(kept, _)| *kept == name) else {
            self.members.push((name, start..self.json.len()));
            return;
        };
        // The new member, written at the end, takes the old one's place.
        let new_len = self.json.len() - start;
        let old = self.members[index].1.clone();
        self.json.drain(old.clone());
        self.json[old.start..].rotate_right(new_len);
        self.members[index].1 = old.start..old.start + new_len;
        for (_, later) in &mut self.members[index + 1..] {
            *later = later.start - old.len() + new_len..later.end - old.len() + new_len;
        }
    }
}

/// Writes an event's fields as JSON members, each after a comma.
struct EventFields<'a>(&'a mut Vec<u8>);

impl EventFields<'_> {
    /// The member's name and colon, or `None` for the fields of a `log` record's metadata
    /// (`log.target`, `log.file` …), which the line leaves out as it leaves out the target.
    fn key(&mut self, field: &Field) -> Option<&mut Vec<u8>> {
        let name = field.name();
        if name.starts_with("log.") {
            return None;
        }
        self.0.push(b',');
        write_json(self.0, name);
        self.0.push(b':');
        Some(self.0)
    }

    fn member<T: serde::Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        if let Some(line) = self.key(field) {
            write_json(line, value);
        }
    }
}

impl Visit for EventFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(line) = self.key(field) {
            write_debug(line, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, &value);
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Serializing a string, a number or a bool into memory cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// A value's `Debug` text (for `%` fields, their `Display` text) as a JSON string.
fn write_debug(out: &mut Vec<u8>, value: &dyn fmt::Debug) {
    use serde::Serializer;
    let mut serializer = serde_json::Serializer::new(out);
    let _ = serializer.collect_str(&format_args!("{value:?}"));
}

/// Writes `time` as chrono's `to_rfc3339_opts(SecondsFormat::Micros, true)` does,
/// `2026-12-07T19:10:50.123456Z`, digit by digit: chrono's writer goes through `fmt` into a
/// `String` of its own for every line.
fn write_timestamp(out: &mut Vec<u8>, time: chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    let Ok(year @ 0..=9999) = u32::try_from(time.year()) else {
        let text = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        out.extend_from_slice(text.as_bytes());
        return;
    };
    // A leap second's nanoseconds run past a billion; chrono writes it as second 60.
    let (second, nanosecond) = match time.nanosecond() {
        leap @ 1_000_000_000.. => (time.second() + 1, leap - 1_000_000_000),
        nanosecond => (time.second(), nanosecond),
    };
    let parts = [
        (year, 4, b'-'),
        (time.month(), 2, b'-'),
        (time.day(), 2, b'T'),
        (time.hour(), 2, b':'),
        (time.minute(), 2, b':'),
        (second, 2, b'.'),
        (nanosecond / 1_000, 6, b'Z'),
    ];
    for (value, width, separator) in parts {
        write_digits(out, value, width);
        out.push(separator);
    }
}

/// Writes the last `width` decimal digits of `value`, with leading zeros.
fn write_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for digit in out[start..].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attributes.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The buffer is never borrowed twice: tracing drops an event dispatched on a thread
        // while that thread dispatches another (a value that logs as it is formatted).
        LINE.with_borrow_mut(|line| {
            self.write_line(line, event, &ctx);
            if line.capacity() > KEPT_LINE_CAPACITY {
                *line = Vec::new();
            }
        });
    }
}

impl<W> JsonLines<W>
where
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn write_line<S>(&self, line: &mut Vec<u8>, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    {
        line.clear();
        line.extend_from_slice(b"{\"level\":\"");
        line.extend_from_slice(event.metadata().level().as_str().as_bytes());
        line.push(b'"');
        if let Some(span) = ctx.event_span(event) {
            line.extend_from_slice(b",\"span\":{\"name\":");
            write_json(line, span.name());
            if let Some(fields) = span.extensions().get::<SpanFields>() {
                line.extend_from_slice(&fields.json);
            }
            line.push(b'}');
        }
        line.extend_from_slice(b",\"timestamp\":\"");
        write_timestamp(line, chrono::Utc::now());
        line.push(b'"');
        event.record(&mut EventFields(line));
        line.extend_from_slice(b"}\n");
        // One write a line, so that lines of concurrent writers do not interleave; a line
        // that cannot be written has nowhere else to go.
        let _ = self
            .make_writer
            .make_writer_for(event.metadata())
            .write_all(line);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// What the layer wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The lines that `log` writes, each parsed.
    fn lines(log: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}")))
            .collect()
    }

    #[test]
    fn a_line_carries_level_span_timestamp_message_and_fields_with_their_types() {
        let lines = lines(|| {
            let span = tracing::info_span!("request", request_id = "r-1", trace_id = %"abc");
            let _entered = span.enter();
            let latency = std::time::Duration::from_micros(1500);
            tracing::warn!(
                method = "GET",
                status = 200_u16,
                delta = -3_i64,
                ratio = 0.5,
                cached = true,
                ?latency,
                "request"
            );
        });
        let [line] = &lines[..] else {
            panic!("{lines:?}")
        };
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "level",
                "span",
                "timestamp",
                "message",
                "method",
                "status",
                "delta",
                "ratio",
                "cached",
                "latency"
            ]
        );
        assert_eq!(line["level"], "WARN");
        assert_eq!(
            line["span"],
            serde_json::json!({ "name": "request", "request_id": "r-1", "trace_id": "abc" })
        );
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert!(
            timestamp.ends_with('Z') && timestamp.len() == 27,
            "{timestamp}"
        );
        assert_eq!(line["message"], "request");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 200);
        assert_eq!(line["delta"], -3);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["cached"], true);
        assert_eq!(line["latency"], "1.5ms");
    }

    #[test]
    fn text_that_json_must_escape_comes_back_as_it_was() {
        let hostile = "quote \" backslash \\ newline \n tab \t bell \u{7} nul \0 é 🦀 </script>";
        let lines = lines(|| {
            let span = tracing::info_span!("outer", value = hostile);
            let _entered = span.enter();
            tracing::error!(text = hostile, shown = %hostile, "{hostile}");
        });
        assert_eq!(lines[0]["message"], hostile);
        assert_eq!(lines[0]["text"], hostile);
        assert_eq!(lines[0]["shown"], hostile);
        assert_eq!(lines[0]["span"]["value"], hostile);
    }

    #[test]
    fn a_field_recorded_into_the_span_later_is_on_the_lines_after_once() {
        let lines = lines(|| {
            let span = tracing::info_span!(
                "request",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
                user = "u-1"
            );
            let _entered = span.enter();
            tracing::info!("before");
            span.record("trace_id", "first, and longer than the next");
            span.record("span_id", 7);
            span.record("trace_id", "second");
            tracing::info!("after");
            span.record("span_id", "eight");
            tracing::info!("last");
        });
        assert_eq!(
            lines[0]["span"],
            serde_json::json!({ "name": "request", "user": "u-1" })
        );
        assert_eq!(
            lines[1]["span"],
            serde_json::json!({ "name": "request", "user": "u-1", "trace_id": "second", "span_id": 7 })
        );
        assert_eq!(
            lines[2]["span"],
            serde_json::json!({ "name": "request", "user": "u-1", "trace_id": "second", "span_id": "eight" })
        );
        let keys: Vec<&String> = lines[2]["span"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "user", "trace_id", "span_id"]);
    }

    #[test]
    fn a_line_names_its_innermost_span_only_and_none_outside_spans() {
        let lines = lines(|| {
            tracing::info!("outside");
            let outer = tracing::info_span!("outer", a = 1);
            let _outer = outer.enter();
            let inner = tracing::info_span!("inner", b = 2);
            let _inner = inner.enter();
            tracing::info!("inside");
        });
        assert!(lines[0].get("span").is_none(), "{}", lines[0]);
        assert_eq!(
            lines[1]["span"],
            serde_json::json!({ "name": "inner", "b": 2 })
        );
    }

    #[test]
    fn the_metadata_fields_of_a_log_record_are_left_out() {
        let lines = lines(|| {
            tracing::info!(log.target = "a::b", log.line = 7, "from the log crate");
        });
        assert_eq!(
            lines[0].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["level", "timestamp", "message"]
        );
    }

    #[test]
    fn a_timestamp_is_written_as_chrono_writes_it() {
        use chrono::{NaiveDate, TimeZone, Utc};
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let times = [
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(1_796_670_650, 123_456_789).unwrap(),
            Utc.from_utc_datetime(
                &date(2026, 12, 31)
                    .and_hms_nano_opt(23, 59, 59, 999_999_999)
                    .unwrap(),
            ),
            Utc.from_utc_datetime(
                &date(2016, 12, 31)
                    .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                    .unwrap(),
            ),
            Utc.from_utc_datetime(&date(9, 2, 3).and_hms_micro_opt(4, 5, 6, 7).unwrap()),
            Utc.from_utc_datetime(&date(-1, 1, 1).and_hms_opt(0, 0, 0).unwrap()),
            Utc.from_utc_datetime(&date(10_000, 1, 1).and_hms_opt(0, 0, 0).unwrap()),
            Utc::now(),
        ];
        for time in times {
            let mut written = Vec::new();
            write_timestamp(&mut written, time);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
        }
    }

    /// A value that logs while it is being formatted.
    struct Chatty;

    impl fmt::Debug for Chatty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            tracing::info!("formatting");
            f.write_str("chatty")
        }
    }

    #[test]
    fn a_value_that_logs_while_it_is_written_leaves_the_line_whole() {
        let lines = lines(|| tracing::info!(value = ?Chatty, "outer"));
        let [line] = &lines[..] else {
            panic!("{lines:?}")
        };
        assert_eq!(line["message"], "outer");
        assert_eq!(line["value"], "chatty");
    }
}
