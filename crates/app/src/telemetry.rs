//! Logging (human-readable text in development, JSON lines in production) and Prometheus
//! metrics (one recorder per process, rendered by `GET /metrics`; `crate::series` lists every
//! series and registers them at start-up).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::BufWriter;
use std::sync::OnceLock;
use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

mod json;

#[cfg(test)]
pub(crate) use json::capture;

use crate::settings::{LogFormat, LogSettings};
use crate::wiring::Store;

/// Lines the log thread holds while stderr is slow; past them, lines are dropped (and counted
/// in `log_lines_dropped_total`) rather than making requests wait. About 6 MB at most.
const BUFFERED_LOG_LINES: usize = 16_384;

/// Counts the lines the writer dropped, for `/metrics`; unset until [`init`] runs.
static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Installs the global subscriber. Logs go to stderr so stdout stays free for command output,
/// written by a thread of their own in batches: a request pays for formatting its line, never
/// for the write, and a stalled reader of stderr drops lines instead of stalling the service.
/// Keep the guard until the process exits: dropping it writes what is still buffered.
///
/// # Errors
/// If the filter does not parse or a subscriber is already installed.
pub fn init(settings: &LogSettings) -> anyhow::Result<WorkerGuard> {
    let filter = EnvFilter::try_new(&settings.filter).map_err(|error| {
        anyhow::anyhow!("invalid configuration: log.filter (RUST_LOG): {error}")
    })?;
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LOG_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let _ = DROPPED_LINES.set(writer.error_counter());
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init(),
        LogFormat::Json => registry.with(json_lines(writer)).try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the log subscriber: {error}"))?;
    Ok(guard)
}

/// The JSON lines layer (`telemetry/json.rs`), writing to `writer`; the tests read their lines
/// from it too.
pub fn json_lines<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    json::JsonLines::new(writer)
}

/// Latency buckets in seconds, from a cache hit to a slow fallback search.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Job wait and run buckets in seconds, from an instant claim to a lease's worth.
const JOB_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (tests start many apps in one process).
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".to_owned()),
                &LATENCY_BUCKETS,
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("job_wait_seconds".to_owned()),
                    &JOB_BUCKETS,
                )
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("job_run_seconds".to_owned()),
                    &JOB_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // If something else installed a recorder first, ours renders nothing: say so once.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        metrics::gauge!("build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Histogram samples wait in buffers until upkeep folds them into buckets: without it
        // they would pile up between scrapes. A plain thread, so it runs under any runtime.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// Records the pool's state, then renders every metric in the Prometheus text format.
pub fn render_metrics(store: &Store) -> String {
    let handle = metrics_handle();
    let status = store.status();
    for (state, value) in [
        ("max", status.max_size),
        ("open", status.size),
        ("idle", status.available),
        ("waiting", status.waiting),
    ] {
        metrics::gauge!("db_pool_connections", "state" => state).set(value as f64);
    }
    let dropped = DROPPED_LINES.get().map_or(0, ErrorCounter::dropped_lines);
    metrics::counter!("log_lines_dropped_total")
        .absolute(u64::try_from(dropped).unwrap_or(u64::MAX));
    handle.render()
}
