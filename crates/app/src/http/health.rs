//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::wiring::Services;

/// Readiness: each dependency's state and the overall verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` or `unavailable`.
    status: &'static str,
    /// `up` or `down` per dependency.
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

/// 200 while the process serves; depends on nothing else, so an orchestrator restarts the
/// process only when the process itself is stuck.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when the database answers within the pool's wait timeout, 503 when it does not.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The database is down", body = Readiness),
    ))]
pub async fn ready(services: web::Data<Services>) -> HttpResponse {
    let database_up = services.pool.ping().await.is_ok();
    let state = |up: bool| if up { "up" } else { "down" };
    let readiness = Readiness {
        status: if database_up { "ok" } else { "unavailable" },
        checks: json!({ "database": state(database_up) }),
    };
    if database_up {
        HttpResponse::Ok().json(readiness)
    } else {
        HttpResponse::ServiceUnavailable().json(readiness)
    }
}
