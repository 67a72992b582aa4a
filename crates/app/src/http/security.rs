//! Security events: each is logged once as a structured `tracing` event (target `security`,
//! field `event` = its stable name, with the request id, client IP and user id), and the durable
//! ones are also kept in the audit trail (served by [`super::audit`]).
//!
//! Role changes and deletions are stored by their repository in the change's transaction; the
//! handlers only log them once the change has committed. Everything else is appended here.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};
use markets_domain::audit::{AuditAction, AuditEvent};
use markets_domain::auth::TokenError;
use markets_domain::error::report;
use markets_domain::user::UserId;
use std::future::{Ready, ready};

use super::client_ip::ClientIp;
use super::error::AppError;
use super::middleware::RequestId;
use crate::wiring::Services;

/// Where a request came from: what every security event records about it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (echoed in `X-Request-Id`).
    pub request_id: String,
    /// The client's address (behind trusted proxies, the forwarded one).
    pub ip: Option<String>,
}

impl RequestContext {
    /// The context of `req`.
    pub fn of(req: &HttpRequest) -> Self {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| String::from_utf8_lossy(id.0.as_bytes()).into_owned())
            .unwrap_or_default();
        let ip = ClientIp::of(req).map(|ip| ip.to_string());
        Self { request_id, ip }
    }

    /// A new event of `action` by `actor`, in this request.
    pub fn event(&self, action: AuditAction, actor: Option<UserId>) -> AuditEvent {
        AuditEvent {
            request_id: Some(self.request_id.clone()),
            ip: self.ip.clone(),
            ..AuditEvent::new(action).by(actor)
        }
    }
}

impl FromRequest for RequestContext {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self::of(req)))
    }
}

/// The authenticated user of a request, left in its extensions by the `Caller` extractor so
/// that events raised outside the handler (denials) can name them.
#[derive(Debug, Clone, Copy)]
pub struct CallerId(pub UserId);

/// Logs `event` once, as a structured event. Never given secrets: events carry none.
pub fn log(event: &AuditEvent) {
    tracing::info!(
        target: "security",
        event = event.action.as_str(),
        request_id = event.request_id.as_deref().unwrap_or_default(),
        client_ip = event.ip.as_deref().unwrap_or("unknown"),
        user_id = event.actor_id.map(|id| id.to_string()),
        target_type = event.target_type.as_deref(),
        target_id = event.target_id.as_deref(),
        details = ?event.details,
        "security event"
    );
}

/// Logs `event` and appends it to the trail. A trail that cannot be written costs the event,
/// not the request: the failure is logged with the event's request id.
pub async fn record(services: &Services, event: AuditEvent) {
    log(&event);
    if let Err(error) = services.audit.append(&event).await {
        tracing::error!(
            request_id = event.request_id.as_deref().unwrap_or_default(),
            error = %report(&error),
            "audit event could not be stored"
        );
    }
}

/// Logs a refused token with why it was refused (`auth.token_rejected`). Not kept in the trail:
/// anyone can send garbage tokens, and a flood of them must not fill the table.
pub fn token_rejected(req: &HttpRequest, reason: &TokenError) {
    let context = RequestContext::of(req);
    let reason = match reason {
        TokenError::Expired => "expired",
        TokenError::BadSignature => "bad_signature",
        TokenError::WrongAlgorithm => "wrong_alg",
        TokenError::Revoked => "revoked",
        TokenError::UnknownUser => "unknown_user",
        _ => "malformed",
    };
    tracing::info!(
        target: "security",
        event = "auth.token_rejected",
        reason,
        request_id = context.request_id,
        client_ip = context.ip.as_deref().unwrap_or("unknown"),
        "security event"
    );
}

/// An email of an account that may not exist, as far as the trail may know it: its first
/// character and its domain (`a…@example.com`).
pub fn mask_email(raw: &str) -> String {
    let (local, domain) = raw.trim().rsplit_once('@').unwrap_or((raw.trim(), ""));
    let first: String = local.chars().take(1).collect();
    let domain: String = domain.chars().take(100).collect();
    format!("{first}…@{domain}")
}

/// Records every 403 under `/api/v1` as `authz.denied` (whichever layer refused), and every
/// 429 of the login route as `auth.login_rate_limited`, once each.
pub async fn refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let response = next.call(req).await?;
    let action = match response.status() {
        StatusCode::FORBIDDEN => AuditAction::AccessDenied,
        StatusCode::TOO_MANY_REQUESTS
            if response.request().match_pattern().as_deref() == Some("/api/v1/auth/login") =>
        {
            AuditAction::LoginRateLimited
        }
        _ => return Ok(response),
    };
    let request = response.request();
    if let Some(services) = request.app_data::<web::Data<Services>>() {
        let actor = request
            .extensions()
            .get::<CallerId>()
            .map(|caller| caller.0);
        let route = request
            .match_pattern()
            .unwrap_or_else(|| request.path().to_owned());
        let event = RequestContext::of(request)
            .event(action, actor)
            .on("route", format!("{} {route}", request.method()));
        record(services, event).await;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("ann.secret@example.com"), "a…@example.com");
        assert_eq!(mask_email("nobody"), "n…@");
    }
}
