//! Liveness and readiness probes.

use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::error::DEPENDENCY_RETRY_AFTER_SECS;
use crate::wiring::{ReadinessProbe, Store};

/// Liveness: the process serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// Readiness: each dependency's state and the overall verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok`, `degraded` (only the cache, the embedder or a read replica is down) or
    /// `unavailable` (the database is down).
    #[schema(value_type = String, pattern = "^(ok|degraded|unavailable)$")]
    status: &'static str,
    /// Each dependency's state.
    checks: DependencyStates,
}

/// `up` or `down`, per dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyStates {
    /// The database.
    #[schema(value_type = String, pattern = "^(up|down)$")]
    database: &'static str,
    /// The cache.
    #[schema(value_type = String, pattern = "^(up|down)$")]
    cache: &'static str,
    /// The embedding provider.
    #[schema(value_type = String, pattern = "^(up|down)$")]
    embeddings: &'static str,
    /// Each PostgreSQL read replica by `host:port`: `up` while reads go to it, `down` while it
    /// does not answer or lags more than `database.max_replica_lag_ms` (its reads go to the
    /// primary). Absent without replicas.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    replicas: BTreeMap<String, &'static str>,
}

/// 200 while the process serves; depends on nothing else, so an orchestrator restarts the
/// process only when the process itself is stuck.
#[utoipa::path(
    operation_id = "live",
    tag = "operations",
    responses((status = 200, description = "The process serves", body = Liveness)))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// 200 `ok` when every dependency answers, 200 `degraded` when only the cache, the embedding
/// provider or a read replica is down (reads fall back to the database, search to text search,
/// a replica's reads to the primary), 503
/// `unavailable` when the database is down. The database and cache checks run concurrently,
/// each bounded by its client's timeout, and their result is reused for a second; the embedder
/// counts as down for a minute after search
/// had to fall back (probing a paid API on every probe would cost money).
#[utoipa::path(
    operation_id = "ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready (`ok`) or serving without the cache, the embedder or a replica (`degraded`)", body = Readiness),
        (status = 503, description = "The database is down (`unavailable`)", body = Readiness),
    ))]
#[get("/health/ready")]
pub async fn ready(probe: web::Data<ReadinessProbe>) -> HttpResponse {
    let checks = probe.check().await;
    let state = |up: bool| if up { "up" } else { "down" };
    let replicas: BTreeMap<String, &'static str> = checks
        .replicas
        .iter()
        .map(|replica| (replica.name.clone(), state(replica.serving)))
        .collect();
    let all_replicas = checks.replicas.iter().all(|replica| replica.serving);
    let database_up = checks.database;
    let readiness = Readiness {
        status: match (
            database_up,
            checks.cache && checks.embeddings && all_replicas,
        ) {
            (false, _) => "unavailable",
            (true, false) => "degraded",
            (true, true) => "ok",
        },
        checks: DependencyStates {
            database: state(database_up),
            cache: state(checks.cache),
            embeddings: state(checks.embeddings),
            replicas,
        },
    };
    if database_up {
        HttpResponse::Ok().json(readiness)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((RETRY_AFTER, DEPENDENCY_RETRY_AFTER_SECS))
            .json(readiness)
    }
}

/// Prometheus text: requests, latencies, pool, dependencies, cache, search, rate limits, jobs,
/// build and process (`crate::series` lists every series).
#[utoipa::path(
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(store: web::Data<Store>, probe: web::Data<ReadinessProbe>) -> HttpResponse {
    crate::series::record_readiness(&probe.check().await);
    crate::series::record_process();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::render_metrics(&store))
}
