//! Security events and the audit policy: each event is logged once as a structured `tracing`
//! event (target `security`, field `event` = its stable name, with the request id, client IP and
//! user id), and kept in the audit trail.
//!
//! Role changes and deletions are stored by their repository in the change's transaction; their
//! front end only logs them ([`log`]) once the change has committed. Everything else is recorded
//! here ([`SecurityEvents::record`]), including the refusals a front end reports
//! ([`SecurityEvents::refused`]), whichever layer refused.

use markets_domain::audit::{AuditAction, AuditEvent, AuditLog};
use markets_domain::auth::TokenError;
use markets_domain::error::report;
use markets_domain::user::UserId;
use std::sync::Arc;

/// Where a request came from: what every security event records about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id (echoed to the client).
    pub request_id: String,
    /// The client's address (behind trusted proxies, the forwarded one).
    pub ip: Option<String>,
}

impl RequestContext {
    /// A new event of `action` by `actor`, in this request.
    pub fn event(&self, action: AuditAction, actor: Option<UserId>) -> AuditEvent {
        let mut event = AuditEvent::new(action).by(actor);
        event.request_id = Some(self.request_id.clone());
        event.ip = self.ip.clone();
        event
    }
}

/// A request refused before it could do anything, as the front end saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller lacked the permission or the ownership the request needs.
    Forbidden,
    /// A login refused by a rate limit (per client or per email).
    LoginThrottled,
}

impl Refusal {
    fn action(self) -> AuditAction {
        match self {
            Self::Forbidden => AuditAction::AccessDenied,
            Self::LoginThrottled => AuditAction::LoginRateLimited,
        }
    }
}

/// Records security events: logs them, and appends them to the audit trail.
#[derive(Debug, Clone)]
pub struct SecurityEvents {
    trail: Arc<dyn AuditLog>,
}

impl SecurityEvents {
    /// Events kept in `trail`.
    pub fn new(trail: Arc<dyn AuditLog>) -> Self {
        Self { trail }
    }

    /// Logs `event` and appends it to the trail. A trail that cannot be written costs the
    /// event, not the request: the failure is logged with the event's request id.
    pub async fn record(&self, event: AuditEvent) {
        log(&event);
        if let Err(error) = self.trail.append(&event).await {
            tracing::error!(
                request_id = event.request_id.as_deref().unwrap_or_default(),
                error = %report(&error),
                "audit event could not be stored"
            );
        }
    }

    /// Records a refusal of `route` (method and pattern, never a raw path with ids) for `actor`.
    pub async fn refused(
        &self,
        refusal: Refusal,
        context: &RequestContext,
        actor: Option<UserId>,
        route: &str,
    ) {
        let event = context.event(refusal.action(), actor).on("route", route);
        self.record(event).await;
    }
}

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

/// Logs a refused token with why it was refused (`auth.token_rejected`). Not kept in the trail:
/// anyone can send garbage tokens, and a flood of them must not fill the table.
pub fn token_rejected(context: &RequestContext, reason: &TokenError) {
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
