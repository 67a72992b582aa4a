//! `/api/v1/auth`: registration and login.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use markets_domain::audit::AuditAction;
use markets_domain::auth::{AuthError, Password, Registration};
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email};

use super::dto::{LoginRequest, RegisterRequest, TokenResponse, UserResponse, required};
use super::envelope;
use super::error::{AppError, ErrorBody};
use super::extract::{Authenticated, JsonBody};
use super::ratelimit;
use super::security::{self, RequestContext};
use crate::wiring::Services;

impl RegisterRequest {
    /// The registration this body describes; every invalid field is reported at once.
    pub(super) fn into_registration(self) -> Result<Registration, AppError> {
        let email = required::<String>("email", self.email).and_then(|raw| Email::parse(&raw));
        let password =
            required::<String>("password", self.password).and_then(|raw| Password::parse(&raw));
        let display_name = required::<String>("display_name", self.display_name)
            .and_then(|raw| DisplayName::parse(&raw));
        AppError::reject_invalid([
            email.as_ref().err(),
            password.as_ref().err(),
            display_name.as_ref().err(),
        ])?;
        Ok(Registration::new(email?, password?, display_name?))
    }
}

/// Register a user (role `user`).
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = inline(super::envelope::Envelope<UserResponse>)),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid email, password or display name", body = ErrorBody),
    )
)]
pub async fn register(
    services: web::Data<Services>,
    context: RequestContext,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let registration = body.into_registration()?;
    let user = services.auth.register(registration, Role::User).await?;
    let event = context
        .event(AuditAction::Registered, Some(user.id))
        .on("user", user.id);
    security::record(&services, event).await;
    Ok(envelope::respond(
        StatusCode::CREATED,
        UserResponse::from(user),
    ))
}

/// Exchange email and password for an access token.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "A 30-minute bearer token", body = inline(super::envelope::Envelope<TokenResponse>)),
        (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    )
)]
pub async fn login(
    services: web::Data<Services>,
    context: RequestContext,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    // Per email as well as per IP: guessing one account's password from many addresses is
    // still limited. Unparseable emails share one key (they cannot log in anyway).
    let account = Email::parse(&body.email).map_or_else(|_| "invalid".to_owned(), String::from);
    let per_email = ratelimit::decide(
        &services,
        &services.login_policy,
        &format!("email:{account}"),
    )
    .await;
    if let Some(decision) = per_email.filter(|decision| !decision.allowed) {
        return Ok(ratelimit::refusal(&decision));
    }
    let token = match services.auth.login(&body.email, &body.password).await {
        Err(AuthError::InvalidCredentials { account }) => {
            // The email may name no account: only a masked form of it is kept. The caller is
            // anonymous either way; an existing account is the target. The response is the same
            // in both cases, and so is the work done here, so neither reveals which it was.
            let event = context
                .event(AuditAction::LoginFailed, None)
                .with("email", security::mask_email(&body.email));
            let event = match account {
                Some(id) => event.on("user", id),
                None => event,
            };
            security::record(&services, event).await;
            return Err(AuthError::InvalidCredentials { account }.into());
        }
        outcome => outcome?,
    };
    Ok(envelope::ok(TokenResponse {
        access_token: token.token,
        token_type: "Bearer",
        expires_in: token.expires_in,
    }))
}

/// Revoke the presented token, on every instance, until it would have expired.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked; using the token again is 401"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The database is down", body = ErrorBody),
    )
)]
pub async fn logout(
    services: web::Data<Services>,
    Authenticated(session): Authenticated,
    context: RequestContext,
) -> Result<HttpResponse, AppError> {
    services.auth.logout(&session).await?;
    let event = context.event(AuditAction::Logout, Some(session.user.id));
    security::record(&services, event).await;
    Ok(HttpResponse::NoContent().finish())
}
