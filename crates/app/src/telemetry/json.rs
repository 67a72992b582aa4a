//! JSON lines written in one pass: the layer behind `LOG_FORMAT=json`.
//!
//! One object a line: `timestamp` (RFC 3339, microseconds, UTC), `level`, the event's fields at
//! the top level (`message` among them), `target`, and the innermost span's fields and `name` as
//! `span` (a request's id, method and client), the shape tracing-subscriber's JSON format gives
//! with `flatten_event(true)` and no span list.
//!
//! Written by hand because every request writes such a line: tracing-subscriber's format keeps
//! a span's fields as JSON text and parses them back into a value for each line, and
//! json-subscriber builds a `serde_json::Value` for each of the line's parts; either made the
//! completion line cost a quarter of `/health/live`'s throughput. Here a span's fields are
//! rendered to JSON once, when they are recorded, and a line is written into a buffer of its
//! thread's, reused from line to line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The layer: writes each event as one JSON line to `writer`.
#[derive(Debug)]
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

/// A span's fields as JSON members (`"key":value,...`), kept in the span's extensions.
struct SpanFields(String);

thread_local! {
    /// The line being written, and the timestamp's date and time to the second, which changes
    /// once a second and so is formatted once a second.
    static LINE: RefCell<(String, Clock)> = RefCell::new((String::with_capacity(512), Clock::default()));
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut fields = String::new();
            attrs.record(&mut Members(&mut fields));
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    /// A field recorded later is appended: recorded twice, it appears twice and a JSON reader
    /// keeps the later value.
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Members(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let write = |line: &mut String, clock: &mut Clock| {
            format_event(line, clock, event, &ctx);
            // A line that cannot be written is lost; the writer counts what it drops.
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
        };
        // The thread's buffer, or a fresh one while it is in use (an event logged while a line
        // is written) or gone (a thread exiting).
        let reused = LINE.try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut buffer| {
                    let (line, clock) = &mut *buffer;
                    write(line, clock);
                })
                .is_ok()
        });
        if reused != Ok(true) {
            write(&mut String::new(), &mut Clock::default());
        }
    }
}

/// Replaces `line` with `event`'s line.
fn format_event<S>(line: &mut String, clock: &mut Clock, event: &Event<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let metadata = event.metadata();
    line.clear();
    line.push_str("{\"timestamp\":\"");
    clock.write_now(line);
    line.push_str("\",\"level\":\"");
    line.push_str(metadata.level().as_str());
    line.push('"');
    event.record(&mut Members(line));
    line.push_str(",\"target\":");
    push_str(line, metadata.target());
    if let Some(span) = ctx.event_span(event) {
        line.push_str(",\"span\":{");
        if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>()
            && let Some(members) = fields.strip_prefix(',')
        {
            line.push_str(members);
            line.push(',');
        }
        line.push_str("\"name\":");
        push_str(line, span.name());
        line.push('}');
    }
    line.push_str("}\n");
}

/// A visitor appending each field as a `,"key":value` member.
struct Members<'a>(&'a mut String);

impl Members<'_> {
    fn key(&mut self, field: &Field) {
        self.0.push(',');
        push_str(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_str(self.0, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    /// Not finite, JSON has no number for it: `null`, as serde_json writes it.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.push_str("null");
        }
    }

    /// Anything else (a message, a `%`-recorded value) as a string of its `Debug` text.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.0.push('"');
        let _ = write!(Escaping(self.0), "{value:?}");
        self.0.push('"');
    }
}

/// `text` as a JSON string.
fn push_str(line: &mut String, text: &str) {
    line.push('"');
    escape(line, text);
    line.push('"');
}

/// Writes what is formatted into it JSON-escaped.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape(self.0, text);
        Ok(())
    }
}

/// Appends `text` escaped for a JSON string: quotes, backslashes and control characters; runs
/// of anything else are copied as they are.
fn escape(line: &mut String, text: &str) {
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        line.push_str(&text[plain..at]);
        if escaped.is_empty() {
            let _ = write!(line, "\\u{byte:04x}");
        } else {
            line.push_str(escaped);
        }
        plain = at + 1;
    }
    line.push_str(&text[plain..]);
}

/// The current second, formatted, so that a line only formats its microseconds.
#[derive(Default)]
struct Clock {
    second: u64,
    formatted: String,
}

impl Clock {
    /// Appends the current time as `2026-12-04T19:18:10.375164Z`.
    fn write_now(&mut self, line: &mut String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if self.second != now.as_secs() || self.formatted.is_empty() {
            self.second = now.as_secs();
            self.formatted.clear();
            let time = i64::try_from(self.second)
                .ok()
                .and_then(|second| chrono::DateTime::from_timestamp(second, 0))
                .unwrap_or_default();
            let _ = write!(self.formatted, "{}", time.format("%Y-%m-%dT%H:%M:%S"));
        }
        line.push_str(&self.formatted);
        let _ = write!(line, ".{:06}Z", now.subsec_micros());
    }
}

/// The lines a subscriber with this layer logs, kept in memory: what tests of the log read.
#[cfg(test)]
pub(crate) mod capture {
    use super::JsonLines;
    use std::sync::{Arc, Mutex};
    use tracing::Subscriber;
    use tracing_subscriber::layer::SubscriberExt;

    /// The lines written so far.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    /// A subscriber logging every event through the layer into the returned [`Captured`].
    pub(crate) fn subscriber() -> (impl Subscriber + Send + Sync, Captured) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::registry().with(JsonLines::new(move || writer.clone()));
        (subscriber, captured)
    }

    impl Captured {
        /// Every line so far, parsed (a line that is not JSON fails the test).
        pub(crate) fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}")))
                .collect()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use tracing::{info, info_span, warn};

    /// The lines `body` logs through the layer, parsed.
    fn lines(body: impl FnOnce()) -> Vec<Value> {
        let (subscriber, captured) = capture::subscriber();
        tracing::subscriber::with_default(subscriber, body);
        captured.lines()
    }

    #[test]
    fn an_event_is_one_object_with_its_fields_on_top_and_its_span_inside() {
        let logged = lines(|| {
            let span = info_span!("request", request_id = "r-1", method = %"GET", market_id = tracing::field::Empty);
            span.record("market_id", 42);
            span.in_scope(|| {
                info!(
                    route = "/x",
                    status = 200u16,
                    latency_ms = 0.25,
                    ok = true,
                    "request completed"
                )
            });
        });
        let [line] = logged.as_slice() else {
            panic!("{logged:?}")
        };
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request completed");
        assert_eq!(line["route"], "/x");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.25);
        assert_eq!(line["ok"], true);
        assert_eq!(line["target"], module_path!());
        assert_eq!(
            line["span"],
            json!({"request_id": "r-1", "method": "GET", "market_id": 42, "name": "request"})
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
    }

    #[test]
    fn text_from_anyone_is_escaped_and_numbers_json_cannot_hold_are_null() {
        let hostile = "quote \" backslash \\ line\nbreak \u{1} bell\u{7} tab\t é ✓";
        let logged = lines(|| {
            let span = info_span!("request", user_agent = hostile, empty = "");
            span.in_scope(|| warn!(agent = %hostile, ratio = f64::NAN, count = -3i64, "{hostile}"));
        });
        let [line] = logged.as_slice() else {
            panic!("{logged:?}")
        };
        assert_eq!(line["message"], hostile);
        assert_eq!(line["agent"], hostile);
        assert_eq!(line["span"]["user_agent"], hostile);
        assert_eq!(line["span"]["empty"], "");
        assert_eq!(line["ratio"], Value::Null);
        assert_eq!(line["count"], -3);
        assert_eq!(line["level"], "WARN");
    }

    #[test]
    fn an_event_outside_spans_has_no_span_and_a_span_without_fields_its_name() {
        let logged = lines(|| {
            info!("alone");
            info_span!("bare").in_scope(|| info!("inside"));
        });
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(logged[0].get("span").is_none(), "{}", logged[0]);
        assert_eq!(logged[1]["span"], json!({"name": "bare"}));
    }
}
