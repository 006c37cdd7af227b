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

/// One JSON object per line: `ts`, `level`, `target`, `log_class`, `message`, the event's
/// fields, and the names of the enclosing spans.
pub struct JsonWithClass;

impl<S, N> FormatEvent<S, N> for JsonWithClass
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut ts = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut visitor = JsonVisitor(serde_json::Map::new());
        event.record(&mut visitor);
        let mut fields = visitor.0;
        let class = match fields.remove("log_class") {
            Some(serde_json::Value::String(c)) if LOG_CLASSES.contains(&c.as_str()) => c,
            _ => "app".to_string(),
        };
        let mut out = serde_json::Map::new();
        out.insert("ts".into(), ts.into());
        out.insert("level".into(), event.metadata().level().as_str().into());
        out.insert("target".into(), event.metadata().target().into());
        out.insert("log_class".into(), class.into());
        if let Some(message) = fields.remove("message") {
            out.insert("message".into(), message);
        }
        if !fields.is_empty() {
            out.insert("fields".into(), fields.into());
        }
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> = scope.from_root().map(|s| s.name().into()).collect();
            out.insert("spans".into(), spans.into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(out))
    }
}

struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
