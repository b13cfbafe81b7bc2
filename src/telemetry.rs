//! Log set-up: human-readable lines by default, JSON with `MSR_LOG_FORMAT=json`; `RUST_LOG` filters.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber, writing to stdout (the server). Safe to call more than once.
pub fn init(format: LogFormat) {
    init_to(format, false);
}

/// Installs the global subscriber, on stderr when `stderr` (commands keep stdout for their report).
pub fn init_to(format: LogFormat, stderr: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,hyper=warn"));
    let ansi = if stderr {
        std::io::IsTerminal::is_terminal(&std::io::stderr())
    } else {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    };
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// A counter with one label whose name and value are fixed strings, looked up in the registry
/// once (for counters bumped on hot paths).
pub fn static_counter(
    name: &'static str,
    label: &'static str,
    value: &'static str,
) -> metrics::Counter {
    type Table = std::sync::RwLock<
        std::collections::HashMap<(&'static str, &'static str, &'static str), metrics::Counter>,
    >;
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    let key = (name, label, value);
    if let Some(counter) = table
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return counter.clone();
    }
    let counter = metrics::counter!(name, label => value);
    table
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, counter.clone());
    counter
}

/// Counters of things operators should see (exported as metrics later).
#[derive(Debug, Default)]
pub struct Counters {
    /// Webhooks refused for their signature.
    pub signature_failures: std::sync::atomic::AtomicU64,
    /// Events naming a user already linked to another customer.
    pub match_conflicts: std::sync::atomic::AtomicU64,
    /// Events recorded.
    pub events_recorded: std::sync::atomic::AtomicU64,
    /// Duplicate deliveries.
    pub events_duplicate: std::sync::atomic::AtomicU64,
    /// Events this instance finished processing (whatever the outcome).
    pub events_processed: std::sync::atomic::AtomicU64,
    /// Events the webhook pipeline applied in a batch (its fast path).
    pub events_batched: std::sync::atomic::AtomicU64,
    /// Subscription re-fetches sent to Stripe.
    pub refetches: std::sync::atomic::AtomicU64,
}

impl Counters {
    /// Adds one.
    pub fn bump(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
