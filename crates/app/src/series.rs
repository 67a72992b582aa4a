//! Every series the service exports, described (`# HELP`) and registered at start-up with the
//! label values known in advance at zero: a counter that appears only after its first event
//! gives a `rate()` alert nothing to evaluate until trouble has already happened.
//!
//! | metric | labels |
//! |---|---|
//! | `http_requests_total`, `http_request_duration_seconds` (histogram) | `method`, `route` (the pattern, never raw ids), `status` |
//! | `db_pool_connections` (gauge, the primary's pool) | `state`: `max`, `open`, `idle`, `waiting` |
//! | `db_queries_total` (one per connection checkout: a statement, or a few in a transaction) | `role`: `primary`, `replica` |
//! | `db_replica_serving` (gauge, 1 or 0: reads go to it), `db_replica_lag_seconds` (gauge, at its last probe) | `replica` (`host:port`); only with replicas |
//! | `dependency_up` (gauge, 1 or 0) | `dependency`: `database`, `cache`, `embeddings`, as `/health/ready` reports them |
//! | `cache_requests_total` | `result`: `hit`, `miss` |
//! | `cache_errors_total` | |
//! | `search_requests_total` | `mode`: `semantic`, `fallback` |
//! | `rate_limit_rejections_total` | `policy` |
//! | `jobs_total` | `kind`, `outcome`: `succeeded`, `retried`, `dead` |
//! | `jobs_queue_depth` (gauge, sampled by workers) | `kind`, `state`: `queued`, `running`, `dead` |
//! | `jobs_oldest_due_seconds` (gauge, sampled by workers) | `kind` |
//! | `job_wait_seconds` (histogram: due to claimed), `job_run_seconds` (histogram) | `kind` |
//! | `embeddings_computed_total` | |
//! | `log_lines_dropped_total` (log lines dropped while stderr could not keep up) | |
//! | `build_info` (gauge, 1) | `version` |
//! | `process_*` (CPU seconds, resident and virtual memory, open and max file descriptors, threads, start time) | |

use markets_domain::jobs::JobKind;
use markets_postgres::Role;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use std::sync::OnceLock;

use crate::wiring::Checks;

/// The metrics a fresh instance lists (with `# HELP`) from its first scrape on.
pub const EXPORTED: [&str; 19] = [
    "http_requests_total",
    "http_request_duration_seconds",
    "db_pool_connections",
    "db_queries_total",
    "dependency_up",
    "cache_requests_total",
    "cache_errors_total",
    "search_requests_total",
    "rate_limit_rejections_total",
    "jobs_total",
    "embeddings_computed_total",
    "log_lines_dropped_total",
    "build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
];

/// The outcomes a job run is counted under.
const JOB_OUTCOMES: [&str; 3] = ["succeeded", "retried", "dead"];

/// The dependencies `/health/ready` checks.
const DEPENDENCIES: [&str; 3] = ["database", "cache", "embeddings"];

/// Describes every series and registers the known label values at zero: every documented
/// response of every operation in `api` (method, route pattern, status), and `policies`, the
/// names of the configured rate-limit policies. Idempotent: tests start many apps in one
/// process.
pub fn register(api: &utoipa::openapi::OpenApi, policies: &[String]) {
    describe();
    for (method, route, status) in documented_responses(api) {
        let labels = [("method", method), ("route", route), ("status", status)];
        counter!("http_requests_total", &labels).increment(0);
        // Registered, not recorded: the histogram is listed with empty buckets.
        let _ = histogram!("http_request_duration_seconds", &labels);
    }
    for role in [Role::Primary, Role::Replica] {
        counter!("db_queries_total", "role" => role.as_str()).increment(0);
    }
    for result in ["hit", "miss"] {
        counter!("cache_requests_total", "result" => result).increment(0);
    }
    counter!("cache_errors_total").increment(0);
    counter!("embeddings_computed_total").increment(0);
    counter!("log_lines_dropped_total").increment(0);
    for mode in ["semantic", "fallback"] {
        counter!("search_requests_total", "mode" => mode).increment(0);
    }
    for policy in policies {
        counter!("rate_limit_rejections_total", "policy" => policy.clone()).increment(0);
    }
    for kind in JobKind::ALL {
        for outcome in JOB_OUTCOMES {
            counter!("jobs_total", "kind" => kind.as_str(), "outcome" => outcome).increment(0);
        }
    }
    process().describe();
}

/// Every (method, path, status) the document lists, as the request metrics label them.
fn documented_responses(api: &utoipa::openapi::OpenApi) -> Vec<(String, String, String)> {
    let Ok(document) = serde_json::to_value(api) else {
        return Vec::new();
    };
    let Some(paths) = document["paths"].as_object() else {
        return Vec::new();
    };
    let mut responses = Vec::new();
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().into_iter().flatten() {
            for status in operation["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|r| r.0)
            {
                let method = method.to_ascii_uppercase();
                responses.push((method, path.clone(), status.clone()));
            }
        }
    }
    responses
}

/// `# HELP` for every series.
fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP responses by method, route pattern and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to respond, by method, route pattern and status."
    );
    describe_gauge!(
        "db_pool_connections",
        "The primary database pool's connections by state."
    );
    describe_counter!(
        "db_queries_total",
        "Database operations (connection checkouts) by the role of the server: primary or replica."
    );
    describe_gauge!(
        "db_replica_serving",
        "Whether reads go to a read replica (1) or not (0: down or lagging)."
    );
    describe_gauge!(
        "db_replica_lag_seconds",
        Unit::Seconds,
        "How far a read replica was behind the primary at its last probe."
    );
    describe_gauge!(
        "dependency_up",
        "Whether a dependency is up (1) or down (0), as /health/ready reports it."
    );
    describe_counter!(
        "cache_requests_total",
        "Single-market reads by cache result."
    );
    describe_counter!(
        "cache_errors_total",
        "Cache commands that failed or timed out."
    );
    describe_counter!(
        "search_requests_total",
        "Searches by mode: semantic, or the text fallback."
    );
    describe_counter!(
        "rate_limit_rejections_total",
        "Requests refused by a rate-limit policy."
    );
    describe_counter!("jobs_total", "Job runs by kind and outcome.");
    describe_gauge!(
        "jobs_queue_depth",
        "Jobs by kind and state, as a worker last sampled them."
    );
    describe_gauge!(
        "jobs_oldest_due_seconds",
        Unit::Seconds,
        "How long the oldest due job of a kind has waited, as a worker last sampled it."
    );
    describe_histogram!(
        "job_wait_seconds",
        Unit::Seconds,
        "From a job's due time to its claim."
    );
    describe_histogram!("job_run_seconds", Unit::Seconds, "How long a job ran.");
    describe_counter!(
        "embeddings_computed_total",
        "Market embeddings computed by the indexer."
    );
    describe_counter!(
        "log_lines_dropped_total",
        "Log lines dropped because stderr did not keep up."
    );
    describe_gauge!("build_info", "The running build, as a label.");
}

/// Records the dependencies' states for `dependency_up`.
pub fn record_readiness(checks: &Checks) {
    for (dependency, up) in
        DEPENDENCIES
            .into_iter()
            .zip([checks.database, checks.cache, checks.embeddings])
    {
        gauge!("dependency_up", "dependency" => dependency).set(f64::from(u8::from(up)));
    }
    for replica in &checks.replicas {
        let name = replica.name.clone();
        gauge!("db_replica_serving", "replica" => name.clone())
            .set(f64::from(u8::from(replica.serving)));
        if let Some(lag) = replica.lag {
            gauge!("db_replica_lag_seconds", "replica" => name).set(lag.as_secs_f64());
        }
    }
}

/// Samples the process's CPU, memory, descriptors and threads into the `process_*` series.
pub fn record_process() {
    process().collect();
}

/// The process collector, shared by every scrape.
fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}
