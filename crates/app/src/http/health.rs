//! Liveness: the process is up and serving.

use actix_web::{HttpResponse, web};
use serde_json::json;

pub(super) fn routes(config: &mut web::ServiceConfig) {
    config.route("/live", web::get().to(live));
}

/// 200 while the process serves; depends on nothing else, so an orchestrator restarts the
/// process only when the process itself is stuck.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}
