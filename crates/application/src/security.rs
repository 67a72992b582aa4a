//! Security events and the audit policy: each event is logged once as a structured `tracing`
//! event (target `security`, field `event` = its stable name, with the request id, client IP and
//! user id), and kept in the audit trail.
//!
//! Role changes and deletions are stored by their repository in the change's transaction; their
//! front end only logs them ([`log`]) once the change has committed. Everything else is recorded
//! here ([`SecurityEvents::record`]), including the refusals a front end reports
//! ([`SecurityEvents::refused`]), whichever layer refused.
//!
//! Refusals are what a client can repeat at will, so they are tallied rather than appended: one
//! row per client (address, and actor when authenticated), action, route and minute, whose
//! `details.count` says how many refusals it stands for (see the `tally` module for how this
//! process coalesces them and [`AuditLog::tally`] for how the store merges them). A flood of
//! refused requests thus adds a bounded number of rows and writes, while each refusal is still
//! logged.
//! A failed login (`auth.login_failed`) stays one row per attempt: it is a real attempt at a
//! password, already bounded by the login rate limits, and each names the account tried.

mod tally;

use markets_domain::audit::{AuditAction, AuditEvent, AuditLog};
use markets_domain::auth::TokenError;
use markets_domain::error::report;
use markets_domain::user::UserId;
use std::sync::Arc;
use tally::Tallies;

/// Where a request came from: what every security event records about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id (echoed to the client).
    pub request_id: String,
    /// The client's address (behind trusted proxies, the forwarded one).
    pub ip: Option<String>,
    /// The client as rate limits count it, when that differs from `ip`: an IPv6 client's network
    /// (e.g. its /64, through which one host can rotate), so that budgets and tallies keyed on it
    /// cannot be escaped by changing address within it.
    pub network: Option<String>,
}

impl RequestContext {
    /// Who the client is for budgets and tallies: its network if it has one, else its address.
    pub fn client(&self) -> Option<&str> {
        self.network.as_deref().or(self.ip.as_deref())
    }

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
    /// A login refused by a rate limit (per client, or an account's budget of failures).
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

/// Records security events: logs them, and appends or tallies them in the audit trail. Clones
/// share the refusals held for the next [`SecurityEvents::flush`].
#[derive(Debug, Clone)]
pub struct SecurityEvents {
    trail: Arc<dyn AuditLog>,
    tallies: Arc<Tallies>,
}

impl SecurityEvents {
    /// How many tally keys (clients, actions, routes in a minute) a process holds between
    /// flushes: a few MiB at most. Past it, refusals of new keys are written one by one.
    pub const TALLY_CAPACITY: usize = 10_000;

    /// Events kept in `trail`.
    pub fn new(trail: Arc<dyn AuditLog>) -> Self {
        Self::with_tally_capacity(trail, Self::TALLY_CAPACITY)
    }

    /// Events kept in `trail`, holding at most `capacity` tally keys between flushes.
    pub fn with_tally_capacity(trail: Arc<dyn AuditLog>, capacity: usize) -> Self {
        let tallies = Arc::new(Tallies::new(trail.clone(), capacity));
        Self { trail, tallies }
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
        let mut event = context.event(refusal.action(), actor).on("route", route);
        // A tally stands for every refusal of the client's network that minute.
        event.ip = context.client().map(str::to_owned);
        self.tally(event).await;
    }

    /// Logs `event`, one a client can repeat at will, and tallies it: the first of its key
    /// ([`AuditEvent::tally_key`]) reaches the trail at once, with a count of 1; its repeats are
    /// held and added to that count by the next [`Self::flush`]. A trail that cannot be written
    /// costs neither the request nor the count, which waits for the next flush.
    pub async fn tally(&self, event: AuditEvent) {
        log(&event);
        self.tallies.add(event).await;
    }

    /// Adds the counts held since the last flush to their rows in the trail, one write per key,
    /// and forgets the keys whose minute is over. `serve` runs it periodically and once more on
    /// shutdown (`maintenance::flush_tallies`); tests run it to see the final counts.
    pub async fn flush(&self) {
        self.tallies.flush().await;
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
