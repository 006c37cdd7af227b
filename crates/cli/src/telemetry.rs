//! Structured logs with a log class on every event.
//!
//! Every event carries `log_class`: `audit` (the audit trail's events), `access` (one line per
//! HTTP request) or `app` (everything else). The infrastructure routes each class to a log
//! bucket with its own retention (audit >= 5 years), so an event without a class would land
//! in the wrong bucket: the JSON formatter adds `"log_class":"app"` to any event that has none.

use std::fmt;

use tracing::{field::Field, Event, Subscriber};
use tracing_subscriber::{
    fmt::{format::Writer, time::FormatTime, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
    EnvFilter,
};

/// The log classes (one name across Rust, HCL and docs).
pub const LOG_CLASSES: [&str; 3] = ["audit", "app", "access"];

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone)]
pub enum LogSink {
    /// Standard error (every command but `bench`).
    Stderr,
    /// Appended to this file, always as JSON: `bench` runs a server in-process, and its request
    /// and audit lines (two per transfer) would bury the results; worse, a terminal or pipe
    /// reading them competes for the CPU being measured. The lines are still formatted and
    /// written, so the benchmark still pays for logging.
    File(std::path::PathBuf),
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter (`info`). Returns
/// where the lines actually go (a file that cannot be opened falls back to stderr, with a note).
pub fn init(format: LogFormat, sink: LogSink) -> LogSink {
    use std::io::IsTerminal as _;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    if let LogSink::File(path) = &sink {
        let opened = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(path));
        match opened {
            Ok(file) => {
                let builder = tracing_subscriber::fmt()
                    .with_env_filter(filter())
                    .with_writer(std::sync::Mutex::new(file))
                    .event_format(JsonWithClass);
                // A second init (tests) is harmless: keep the first subscriber.
                let _ = builder.try_init();
                return sink;
            }
            Err(e) => eprintln!("note: cannot open {} ({e}); logging to stderr", path.display()),
        }
    }
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr);
    let _ = if json { builder.event_format(JsonWithClass).try_init() } else { builder.with_target(false).try_init() };
    LogSink::Stderr
}

/// One JSON object per line: `fields` (the event's fields), `level`, `log_class`, `message`,
/// `spans` (the names of the enclosing spans), `target`, `ts` — keys in that (sorted) order,
/// fields sorted by name.
///
/// Written straight into the line buffer, without building a `serde_json::Value` per event: two
/// lines per request (access + audit) made the map's allocations ~7 % of the server's CPU
/// under load. The output is the same JSON (`tests` parse it back with serde_json).
pub struct JsonWithClass;

impl<S, N> FormatEvent<S, N> for JsonWithClass
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let class = match fields.class.as_deref() {
            Some(c) if LOG_CLASSES.contains(&c) => c,
            _ => "app",
        };
        // Sorted by name; a field recorded twice keeps its last value (as a map would).
        fields.list.sort_by(|a, b| a.0.cmp(b.0));
        let mut deduped: Vec<&(&'static str, Val)> = Vec::with_capacity(fields.list.len());
        for f in &fields.list {
            match deduped.last_mut() {
                Some(last) if last.0 == f.0 => *last = f,
                _ => deduped.push(f),
            }
        }
        let mut out = String::with_capacity(256);
        out.push('{');
        if !deduped.is_empty() {
            out.push_str("\"fields\":{");
            for (i, (name, value)) in deduped.iter().map(|f| (f.0, &f.1)).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(&mut out, name);
                out.push(':');
                value.push_json(&mut out);
            }
            out.push_str("},");
        }
        out.push_str("\"level\":");
        push_json_str(&mut out, event.metadata().level().as_str());
        out.push_str(",\"log_class\":");
        push_json_str(&mut out, class);
        if let Some(message) = &fields.message {
            out.push_str(",\"message\":");
            message.push_json(&mut out);
        }
        if let Some(scope) = ctx.event_scope() {
            out.push_str(",\"spans\":[");
            for (i, span) in scope.from_root().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(&mut out, span.name());
            }
            out.push(']');
        }
        out.push_str(",\"target\":");
        push_json_str(&mut out, event.metadata().target());
        out.push_str(",\"ts\":\"");
        // RFC 3339 digits, letters and punctuation only: nothing to escape.
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut out))?;
        out.push_str("\"}");
        writeln!(writer, "{out}")
    }
}

/// A field's value, as recorded.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Val {
    fn push_json(&self, out: &mut String) {
        use fmt::Write as _;
        match self {
            Val::Str(s) => push_json_str(out, s),
            Val::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Val::U64(n) => {
                let _ = write!(out, "{n}");
            }
            // JSON has no NaN or infinity (serde_json writes null for them too).
            Val::F64(x) if !x.is_finite() => out.push_str("null"),
            Val::F64(x) => {
                let _ = write!(out, "{x:?}");
            }
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Appends `s` as a JSON string: `"` and `\` escaped, control characters as `\n`, `\t`, ... or
/// `\u00XX` (RFC 8259 section 7); everything else, non-ASCII included, as is.
fn push_json_str(out: &mut String, s: &str) {
    use fmt::Write as _;
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The fields of one event: `log_class` and `message` apart, the rest in record order.
#[derive(Default)]
struct Fields {
    class: Option<String>,
    message: Option<Val>,
    list: Vec<(&'static str, Val)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Val) {
        match field.name() {
            "log_class" => {
                self.class = match value {
                    Val::Str(s) => Some(s),
                    // Not a class name: the event falls back to "app" (as before).
                    _ => None,
                }
            }
            "message" => self.message = Some(value),
            name => self.list.push((name, value)),
        }
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Val::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Val::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Val::U64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Val::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Val::F64(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Val::Str(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::JsonWithClass;

    /// Runs `f` under a subscriber with our formatter and returns the lines it wrote.
    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || Writer(sink.clone())).event_format(JsonWithClass).finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_one_json_object_with_its_class_fields_and_spans() {
        let got = lines(|| {
            {
                let span = tracing::info_span!("request");
                let _g = span.enter();
                tracing::info!(log_class = "audit", actor = "staff:1", n = -5i64, big = u64::MAX, ok = true,
                    x = 1.5f64, nan = f64::NAN, dbg = ?Some(3), "event {}", 7);
            }
            tracing::warn!(log_class = "nonsense", "unknown class");
            tracing::info!("no class");
        });
        assert_eq!(got.len(), 3);
        let e = &got[0];
        assert_eq!(e["log_class"], "audit");
        assert_eq!(e["level"], "INFO");
        assert_eq!(e["message"], "event 7");
        assert_eq!(e["spans"], serde_json::json!(["request"]));
        assert_eq!(
            e["fields"],
            serde_json::json!({ "actor": "staff:1", "big": u64::MAX, "dbg": "Some(3)", "n": -5, "nan": null, "ok": true, "x": 1.5 })
        );
        assert!(e["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        assert!(e["target"].as_str().is_some_and(|t| t.contains("telemetry")), "{e}");
        assert_eq!((got[1]["log_class"].as_str(), got[1]["level"].as_str()), (Some("app"), Some("WARN")));
        assert_eq!(got[2]["log_class"], "app");
        assert!(got[2].get("fields").is_none() && got[2].get("spans").is_none(), "{}", got[2]);
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// Any string (quotes, backslashes, control characters, non-ASCII) survives the trip.
        #[test]
        fn strings_round_trip_through_the_json_line(s in any::<String>(), key in "[a-z]{1,8}") {
            let got = lines(|| tracing::info!(log_class = "app", value = s.as_str(), "{key}"));
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(got[0]["fields"]["value"].as_str(), Some(s.as_str()));
            prop_assert_eq!(got[0]["message"].as_str(), Some(key.as_str()));
        }
    }
}
