//! The audit trail: durable records of security-relevant events (failed logins, denials, role
//! changes, deletions, ...), and the [`AuditLog`] port that stores them.
//!
//! Events that describe a change (a role change, a deletion) are written by the repository in the
//! change's own transaction, so the trail never claims a change that was rolled back nor misses
//! one that committed; the others are appended on their own.
//!
//! Events that a client can repeat at will (refusals: a flood of throttled logins or forbidden
//! requests) are *tallied* instead ([`AuditLog::tally`]): one row per [`AuditEvent::tally_key`]
//! (action, minute, actor, client address and target), whose `details.count` says how many
//! events it stands for. The store merges the counts, so several instances tallying the same
//! key still make one row, and a flood costs a bounded number of rows.

use async_trait::async_trait;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{RepositoryError, ValidationError};
use crate::id::uuid_id;
use crate::paging::PageSize;
use crate::permission::Role;
use crate::user::UserId;

uuid_id!(
    /// Identifies an audit event. UUIDv7, so id order is time order: pages are keyed by id alone.
    AuditEventId
);

/// What happened. The names are stable: operators filter and alert on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditAction {
    /// A login with an unknown email or a wrong password.
    LoginFailed,
    /// A login refused by the rate limit.
    LoginRateLimited,
    /// A user registered.
    Registered,
    /// A user logged out (revoked their token).
    Logout,
    /// An authenticated caller lacked the permission a request needs (403).
    AccessDenied,
    /// An administrator changed a user's role.
    RoleChanged,
    /// A market was deleted.
    MarketDeleted,
    /// A user proved their email address (a verification link).
    EmailVerified,
    /// Someone asked for a password reset email (the email masked: it may name no account).
    PasswordResetRequested,
    /// A user set a new password through a reset link (every earlier token revoked).
    PasswordReset,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 10] = [
        Self::LoginFailed,
        Self::LoginRateLimited,
        Self::Registered,
        Self::Logout,
        Self::AccessDenied,
        Self::RoleChanged,
        Self::MarketDeleted,
        Self::EmailVerified,
        Self::PasswordResetRequested,
        Self::PasswordReset,
    ];

    /// The action's name, as stored, logged (`event`) and served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginFailed => "auth.login_failed",
            Self::LoginRateLimited => "auth.login_rate_limited",
            Self::Registered => "auth.registered",
            Self::Logout => "auth.logout",
            Self::AccessDenied => "authz.denied",
            Self::RoleChanged => "user.role_changed",
            Self::MarketDeleted => "market.deleted",
            Self::EmailVerified => "auth.email_verified",
            Self::PasswordResetRequested => "auth.password_reset_requested",
            Self::PasswordReset => "auth.password_reset",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| ValidationError::new("action", format!("unknown audit action {s:?}")))
    }
}

/// The detail holding how many occurrences a tallied event stands for, in decimal (details are
/// text): e.g. `"count": "1000"`.
pub const COUNT: &str = "count";

/// One security-relevant event. `details` must never hold a password, token, hash or the full
/// email of an unknown account: whoever builds the event is responsible for that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Its id (time-ordered).
    pub id: AuditEventId,
    /// When it happened, to the microsecond (what every store keeps).
    pub at: DateTime<Utc>,
    /// What happened.
    pub action: AuditAction,
    /// Who did it; `None` for anonymous callers.
    pub actor_id: Option<UserId>,
    /// The kind of thing acted on (`"user"`, `"market"`, `"route"`), if any.
    pub target_type: Option<String>,
    /// Which one (an id, or a method and route).
    pub target_id: Option<String>,
    /// The request it happened in.
    pub request_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// More about it, free of secrets.
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    /// A fresh event of `action`, happening now, with nothing else known yet.
    pub fn new(action: AuditAction) -> Self {
        Self {
            id: AuditEventId::new(),
            at: now_micros(),
            action,
            actor_id: None,
            target_type: None,
            target_id: None,
            request_id: None,
            ip: None,
            details: BTreeMap::new(),
        }
    }

    /// Names the actor.
    pub fn by(mut self, actor_id: Option<UserId>) -> Self {
        self.actor_id = actor_id;
        self
    }

    /// Names what was acted on.
    pub fn on(mut self, target_type: &str, target_id: impl fmt::Display) -> Self {
        self.target_type = Some(target_type.to_owned());
        self.target_id = Some(target_id.to_string());
        self
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }

    /// The key under which [`AuditLog::tally`] merges this event with its repeats: its action,
    /// the minute it happened in, its actor, client address and target. Every part is bounded by
    /// what the client already is (an address, an account) or by the service (the action, a
    /// route pattern), so a client cannot mint more keys than it has addresses and accounts;
    /// the target comes last, so nothing in it can pass for another part.
    pub fn tally_key(&self) -> String {
        let minute = self.tally_minute();
        let part = |value: Option<&str>| value.unwrap_or("-").to_owned();
        [
            self.action.as_str().to_owned(),
            minute.format("%Y-%m-%dT%H:%MZ").to_string(),
            part(self.actor_id.map(|id| id.to_string()).as_deref()),
            part(self.ip.as_deref()),
            part(self.target_type.as_deref()),
            part(self.target_id.as_deref()),
        ]
        .join("|")
    }

    /// The start of the minute this event is tallied in (part of its [`Self::tally_key`]).
    pub fn tally_minute(&self) -> DateTime<Utc> {
        self.at
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap_or(self.at)
    }

    /// This event standing for `count` occurrences: as [`AuditLog::tally`] first stores it, with
    /// [`COUNT`] in its details.
    pub fn counted(&self, count: u64) -> Self {
        self.clone().with(COUNT, count)
    }

    /// How many occurrences a tallied event stands for ([`COUNT`] in its details); `None` for an
    /// event that was appended on its own.
    pub fn count(&self) -> Option<u64> {
        self.details.get(COUNT).and_then(|count| count.parse().ok())
    }

    /// A role change's event as stored and logged: with the role the user held before
    /// (`previous_role`), which only the store knows, inside the change's transaction.
    pub fn with_previous_role(&self, previous: Role) -> Self {
        self.clone().with("previous_role", previous)
    }
}

/// The current time truncated to the microsecond, so an event reads back equal to what was
/// written from every store.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}

/// One page of the trail, newest first. A type of its own rather than the markets'
/// [`KeysetPage`](crate::market::KeysetPage): the trail is keyed by id alone, so the next page
/// starts before the last event and needs no separate position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The events, newest first.
    pub events: Vec<AuditEvent>,
    /// Whether older events follow the last one.
    pub has_more: bool,
}

impl AuditPage {
    /// How many events an adapter asks its store for to serve a page of `limit`: one more, whose
    /// presence alone says that another page follows.
    pub fn lookahead(limit: PageSize) -> u32 {
        limit.get() + 1
    }

    /// The page of `limit` from `events`, newest first, fetched with [`Self::lookahead`].
    pub fn from_lookahead(mut events: Vec<AuditEvent>, limit: PageSize) -> Self {
        let limit = limit.get() as usize;
        let has_more = events.len() > limit;
        events.truncate(limit);
        Self { events, has_more }
    }

    /// Where the next page starts (its `before`): the last event's id, if older events follow.
    pub fn next(&self) -> Option<AuditEventId> {
        self.events
            .last()
            .filter(|_| self.has_more)
            .map(|last| last.id)
    }
}

/// Stores audit events. Implementations must pass `markets_contract_tests`' audit log suite.
#[async_trait]
pub trait AuditLog: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `event`.
    async fn append(&self, event: &AuditEvent) -> Result<(), RepositoryError>;

    /// Adds `count` occurrences of `event` under its [`AuditEvent::tally_key`]. The first tally
    /// of a key stores `event` as [`AuditEvent::counted`] by `count`; every later one adds
    /// `count` to that row's [`COUNT`] and changes nothing else (the row keeps the first event's
    /// id, time, request id and other details). Calls for one key from any number of tasks or
    /// processes at once lose no count and make one row; different keys are different rows, and
    /// appended events never merge with tallied ones. A key whose row was purged starts again.
    async fn tally(&self, event: &AuditEvent, count: u64) -> Result<(), RepositoryError>;

    /// At most `limit` events, newest (greatest id) first, strictly older than `before` when it
    /// is given, and whether older ones follow. Keyed by id, so every page costs the same however
    /// deep it is; adapters fetch one event of look-ahead and build the page with
    /// [`AuditPage::from_lookahead`], so `has_more` is exact even at the largest page size.
    async fn page(
        &self,
        before: Option<AuditEventId>,
        limit: PageSize,
    ) -> Result<AuditPage, RepositoryError>;

    /// Deletes the events that happened before `cutoff`; how many there were.
    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, RepositoryError>;
}

forward_through_arc!(AuditLog {
    async fn append(&self, event: &AuditEvent) -> Result<(), RepositoryError>;
    async fn tally(&self, event: &AuditEvent, count: u64) -> Result<(), RepositoryError>;
    async fn page(&self, before: Option<AuditEventId>, limit: PageSize) -> Result<AuditPage, RepositoryError>;
    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, RepositoryError>;
});
