//! Log lines on stderr: `text` or `json` (`telemetry.log_format`), filtered like `RUST_LOG`
//! (default `info`).
//!
//! JSON lines written inside a traced request carry its `trace_id` and `span_id`, so a log
//! search leads straight to the trace. Request spans and their span events are for traces
//! only (they would repeat what the log lines say), so this layer never enables them: with
//! tracing off, no layer wants them and creating one costs a relaxed atomic load.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::traces;
use crate::config::LogFormat;

/// `RUST_LOG` (or `info`), never enabling the trace-only target.
fn filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{}=off", traces::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// The log layer for `format`, with its own filter.
pub(super) fn layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => base
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => base
            .with_ansi(false)
            .event_format(JsonLines)
            .with_filter(filter())
            .boxed(),
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's fields (`message`
/// first), then `trace_id` and `span_id` when inside a traced request.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);

        let mut line = String::with_capacity(256);
        line.push('{');
        push_pair(&mut line, "timestamp", &timestamp.into());
        push_pair(&mut line, "level", &meta.level().as_str().into());
        push_pair(&mut line, "target", &meta.target().into());
        for (name, value) in &fields.0 {
            push_pair(&mut line, name, value);
        }
        if let Some((trace_id, span_id)) = traces::current_ids() {
            push_pair(&mut line, "trace_id", &trace_id.into());
            push_pair(&mut line, "span_id", &span_id.into());
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

fn push_pair(line: &mut String, name: &str, value: &serde_json::Value) {
    if !line.ends_with('{') {
        line.push(',');
    }
    line.push_str(&serde_json::Value::from(name).to_string());
    line.push(':');
    line.push_str(&value.to_string());
}

/// An event's fields as JSON values, `message` first.
#[derive(Default)]
struct JsonFields(Vec<(&'static str, serde_json::Value)>);

impl JsonFields {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        if name == "message" {
            self.0.insert(0, (name, value));
        } else {
            self.0.push((name, value));
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, crate::upstream::error_chain(value).into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_objects_with_message_and_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(JsonLines);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                service = "orders",
                from = "west",
                to = "east",
                n = 3,
                "active region \"changed\""
            );
        });
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "active region \"changed\"");
        assert_eq!(line["service"], "orders");
        assert_eq!(line["n"], 3);
        assert!(line["timestamp"].as_str().is_some_and(|t| t.contains('T')));
        assert!(
            line.get("trace_id").is_none(),
            "no trace outside a traced request"
        );
    }

    #[test]
    fn trace_only_spans_are_disabled_without_a_trace_layer() {
        let subscriber = tracing_subscriber::registry().with(layer(LogFormat::Json));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: traces::TARGET, "request");
            assert!(span.is_disabled());
            let span = tracing::info_span!("an ordinary span");
            assert!(!span.is_disabled(), "the filter is not simply off");
        });
    }
}
