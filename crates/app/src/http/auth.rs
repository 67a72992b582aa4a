//! `/api/v1/auth`: registration, login, logout, email verification and password reset.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post, web};
use chrono::Utc;
use markets_application::login::LoginError;
use markets_application::security::mask_email;
use markets_domain::audit::AuditAction;
use markets_domain::auth::{Password, Registration};
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email};

use super::RoutePolicies;
use super::dto::{
    LoginRequest, PasswordResetConfirmation, PasswordResetRequest, RegisterRequest, ResetRequested,
    TokenResponse, UserResponse, VerifyEmailRequest, required,
};
use super::envelope::{self, Envelope};
use super::error::{AppError, ErrorBody};
use super::extract::{Authenticated, JsonBody};
use super::no_store;
use super::ratelimit;
use super::security::Context;
use crate::wiring::AppState;

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
    operation_id = "register",
    tag = "auth", request_body = RegisterRequest,
    extensions(("x-rate-limit" = json!({"policy": "register", "per": "client_ip"}))),
    responses(
        (status = 201, description = "Registered", body = inline(Envelope<UserResponse>)),
        (status = 409, description = "Email already registered", body = ErrorBody),
        (status = 422, description = "Invalid email, password or display name", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address", body = ErrorBody),
        (status = 503, description = "Password hashing saturated, or the database down", body = ErrorBody),
    )
)]
#[post(
    "/auth/register",
    wrap = "no_store()",
    wrap = "limited!(per_client_ip, register)"
)]
pub async fn register(
    state: web::Data<AppState>,
    Context(context): Context,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let registration = body.into_registration()?;
    let user = state
        .auth()
        .register(registration, Role::User, false)
        .await?;
    let event = context
        .event(AuditAction::Registered, Some(user.id))
        .on("user", user.id);
    state.events().record(event).await;
    Ok(envelope::respond(
        StatusCode::CREATED,
        UserResponse::from(user),
    ))
}

/// Exchange email and password for an access token.
#[utoipa::path(
    operation_id = "login",
    tag = "auth", request_body = LoginRequest,
    extensions(("x-rate-limit" = json!({"policy": "login", "per": "client_ip"}))),
    responses(
        (status = 200, description = "A bearer token (30 minutes by default)", body = inline(Envelope<TokenResponse>)),
        (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or at this account", body = ErrorBody),
        (status = 503, description = "Password hashing saturated, or the database down", body = ErrorBody),
    )
)]
#[post(
    "/auth/login",
    wrap = "no_store()",
    wrap = "limited!(per_client_ip, login)"
)]
pub async fn login(
    state: web::Data<AppState>,
    Context(context): Context,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let token = match state
        .login()
        .login(&body.email, &body.password, &context)
        .await
    {
        Ok(token) => token,
        Err(LoginError::Throttled(policy, decision)) => {
            return Ok(ratelimit::refusal(&policy, &decision));
        }
        Err(LoginError::Auth(error)) => return Err(error.into()),
    };
    Ok(envelope::ok(TokenResponse {
        access_token: token.token,
        token_type: "Bearer",
        expires_in: token.expires_in,
    }))
}

/// Revoke the presented token, on every instance, until it would have expired.
#[utoipa::path(
    operation_id = "logout",
    tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked; using the token again is 401"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The database is down, or Redis refused the revocation \
            (out of memory, read-only): retry, the revocation is idempotent", body = ErrorBody),
    )
)]
#[post("/auth/logout", wrap = "no_store()")]
pub async fn logout(
    state: web::Data<AppState>,
    Authenticated(session): Authenticated,
    Context(context): Context,
) -> Result<HttpResponse, AppError> {
    state.auth().logout(&session).await?;
    let event = context.event(AuditAction::Logout, Some(session.user.id));
    state.events().record(event).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Confirm an email address with the token of its verification link.
#[utoipa::path(
    operation_id = "verifyEmail",
    tag = "auth", request_body = VerifyEmailRequest,
    extensions(("x-rate-limit" = json!({"policy": "account_tokens", "per": "client_ip"}))),
    responses(
        (status = 200, description = "Verified; market notifications now reach the address", body = inline(Envelope<UserResponse>)),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody),
        (status = 422, description = "Malformed body", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
        (status = 503, description = "The database is down", body = ErrorBody),
    )
)]
#[post(
    "/auth/verify-email",
    wrap = "no_store()",
    wrap = "limited!(per_client_ip, account_tokens)"
)]
pub async fn verify_email(
    state: web::Data<AppState>,
    Context(context): Context,
    JsonBody(body): JsonBody<VerifyEmailRequest>,
) -> Result<HttpResponse, AppError> {
    let user = state.auth().verify_email(&body.token, Utc::now()).await?;
    let event = context
        .event(AuditAction::EmailVerified, Some(user.id))
        .on("user", user.id);
    state.events().record(event).await;
    Ok(envelope::ok(UserResponse::from(user)))
}

/// What a reset request answers, known email or not.
const RESET_REQUESTED: ResetRequested = ResetRequested {
    message: "If the email is registered, a reset link is on its way.",
};

/// Ask for a password reset email. The answer, and the work behind it, are the same whether
/// or not the email is registered.
#[utoipa::path(
    operation_id = "requestPasswordReset",
    tag = "auth", request_body = PasswordResetRequest,
    extensions(("x-rate-limit" = json!({"policy": "account_tokens", "per": "client_ip"}))),
    responses(
        (status = 202, description = "Accepted: a link (valid 30 minutes) goes to the address if it is registered", body = inline(Envelope<ResetRequested>)),
        (status = 422, description = "Malformed body or email", body = ErrorBody),
        (status = 429, description = "Too many requests from this address, or for this email", body = ErrorBody),
        (status = 503, description = "The database is down", body = ErrorBody),
    )
)]
#[post(
    "/auth/password-reset",
    wrap = "no_store()",
    wrap = "limited!(per_client_ip, account_tokens)"
)]
pub async fn request_password_reset(
    state: web::Data<AppState>,
    policies: web::Data<RoutePolicies>,
    Context(context): Context,
    JsonBody(body): JsonBody<PasswordResetRequest>,
) -> Result<HttpResponse, AppError> {
    let email = Email::parse(&body.email)?;
    let policy = &policies.password_reset_email;
    let key = format!("email:{}", email.as_str());
    if let Some(decision) = state.limits().decide(policy, &key).await
        && !decision.allowed
    {
        return Ok(ratelimit::refusal(policy, &decision));
    }
    state.auth().request_password_reset(&email).await?;
    let event = context
        .event(AuditAction::PasswordResetRequested, None)
        .with("email", mask_email(email.as_str()));
    state.events().record(event).await;
    Ok(envelope::respond(StatusCode::ACCEPTED, RESET_REQUESTED))
}

/// Set a new password with the token of a reset link; every token issued to the user before
/// is revoked, on every instance.
#[utoipa::path(
    operation_id = "confirmPasswordReset",
    tag = "auth", request_body = PasswordResetConfirmation,
    extensions(("x-rate-limit" = json!({"policy": "account_tokens", "per": "client_ip"}))),
    responses(
        (status = 204, description = "Password set; earlier access tokens are refused from now on"),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody),
        (status = 422, description = "Malformed body, or a password out of bounds", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
        (status = 503, description = "Password hashing saturated, or the database down", body = ErrorBody),
    )
)]
#[post(
    "/auth/password-reset/confirm",
    wrap = "no_store()",
    wrap = "limited!(per_client_ip, account_tokens)"
)]
pub async fn confirm_password_reset(
    state: web::Data<AppState>,
    Context(context): Context,
    JsonBody(body): JsonBody<PasswordResetConfirmation>,
) -> Result<HttpResponse, AppError> {
    let password = Password::parse(&body.password)?;
    let user = state
        .auth()
        .confirm_password_reset(&body.token, &password, Utc::now())
        .await?;
    let event = context
        .event(AuditAction::PasswordReset, Some(user.id))
        .on("user", user.id);
    state.events().record(event).await;
    Ok(HttpResponse::NoContent().finish())
}
