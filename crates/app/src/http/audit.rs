//! `GET /api/v1/admin/audit`: the audit trail, newest first, cursor paged, for admins.

use actix_web::{HttpResponse, get, web};
use markets_domain::audit::AuditEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

use super::envelope::{self, CursorMeta, Page};
use super::error::{AppError, ErrorBody};
use super::extract::{CanAdmin, Require};
use super::no_store;
use super::params::page_size;
use crate::wiring::AppState;

/// Paging of the audit trail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `meta.next_cursor` of the previous page, unchanged (any other value is 422); omit for
    /// the newest events.
    cursor: Option<String>,
    /// Events per page (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// One event of the trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResponse {
    id: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
    /// e.g. `auth.login_failed`, `authz.denied`, `user.role_changed`, `market.deleted`.
    action: String,
    /// `null` for anonymous callers.
    actor_id: Option<uuid::Uuid>,
    target_type: Option<String>,
    target_id: Option<String>,
    request_id: Option<String>,
    ip: Option<String>,
    /// Never a password, token or hash. A refusal (`authz.denied`, `auth.login_rate_limited`)
    /// stands for every refusal of its client, actor, route and minute: `count` says how many
    /// (in decimal), and `id`, `at` and `request_id` are the first one's.
    details: BTreeMap<String, String>,
}

impl From<AuditEvent> for AuditEventResponse {
    fn from(event: AuditEvent) -> Self {
        Self {
            id: event.id.as_uuid(),
            at: event.at,
            action: event.action.as_str().to_owned(),
            actor_id: event.actor_id.map(|id| id.as_uuid()),
            target_type: event.target_type,
            target_id: event.target_id,
            request_id: event.request_id,
            ip: event.ip,
            details: event.details,
        }
    }
}

/// Security events, newest first, cursor paged; needs `admin`.
#[utoipa::path(
    operation_id = "list_audit_events",
    tag = "admin", params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events, newest first; `meta.next_cursor`",
         body = inline(Page<AuditEventResponse, CursorMeta>)),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Lacks `admin`", body = ErrorBody),
        (status = 422, description = "Invalid `cursor` or `limit`", body = ErrorBody),
    )
)]
#[get("/admin/audit", wrap = "no_store()")]
pub async fn list(
    state: web::Data<AppState>,
    _admin: Require<CanAdmin>,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, AppError> {
    let before = params
        .cursor
        .as_deref()
        .map(|raw| state.cursors().decode_audit(raw))
        .transpose();
    let limit = page_size("limit", params.limit.as_deref());
    AppError::reject_invalid([before.as_ref().err(), limit.as_ref().err()])?;
    let (before, limit) = (before?, limit?);
    let page = state.audit().page(before, limit).await?;
    let next_cursor = page.next().map(|id| state.cursors().encode_audit(id));
    let items: Vec<AuditEventResponse> = page.events.into_iter().map(Into::into).collect();
    Ok(envelope::page(items, CursorMeta { next_cursor }))
}
