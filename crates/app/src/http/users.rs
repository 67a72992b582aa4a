//! `/api/v1/users`: the caller, and role management.

use actix_web::{HttpResponse, get, put, web};
use markets_domain::audit::AuditAction;
use markets_domain::user::UserId;

use super::dto::{ChangeRoleRequest, UserResponse};
use super::envelope::{self, Envelope};
use super::error::{AppError, ErrorBody};
use super::extract::{Authenticated, CanAdmin, JsonBody, Require};
use super::no_store;
use super::security::Context;
use crate::wiring::AppState;

/// The caller's own user.
#[utoipa::path(
    operation_id = "get_me",
    tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = inline(Envelope<UserResponse>)),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    )
)]
#[get("/users/me", wrap = "no_store()")]
pub async fn me(Authenticated(session): Authenticated) -> HttpResponse {
    envelope::ok(UserResponse::from(session.user))
}

/// Change a user's role; needs `admin`. Applies from the user's next request.
#[utoipa::path(
    operation_id = "change_role",
    tag = "users", request_body = ChangeRoleRequest,
    params(("id" = uuid::Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user with the new role", body = inline(Envelope<UserResponse>)),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 403, description = "Lacks `admin`", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "It would leave no user with role `admin`; nothing changed", body = ErrorBody),
        (status = 422, description = "Unknown role or malformed id", body = ErrorBody),
    )
)]
#[put("/users/{id}/role", wrap = "no_store()")]
pub async fn change_role(
    state: web::Data<AppState>,
    admin: Require<CanAdmin>,
    Context(context): Context,
    id: web::Path<UserId>,
    JsonBody(body): JsonBody<ChangeRoleRequest>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let event = context
        .event(AuditAction::RoleChanged, Some(admin.session.user.id))
        .on("user", id)
        .with("role", body.role.as_str());
    let change = state
        .auth()
        .change_role(&admin.actor(), id, body.role, &event)
        .await?;
    markets_application::security::log(&event.with_previous_role(change.previous));
    Ok(envelope::ok(UserResponse::from(change.user)))
}
