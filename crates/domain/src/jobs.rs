//! Background jobs: the work a change schedules durably (an outbox written in the same
//! transaction as the change), the queue port workers claim it from, and the notifier port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::auth::TokenPurpose;
use crate::error::{BoxError, RepositoryError, ValidationError};
use crate::id::uuid_id;
use crate::market::MarketId;
use crate::user::UserId;

uuid_id!(
    /// Identifies a job; also the idempotency key of what the job sends.
    JobId
);

/// What a job does. Adding a kind is one variant here and one handler in the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobKind {
    /// Email the creator of a new market.
    NotifyMarketCreated,
    /// (Re)compute a market's search embedding.
    IndexMarketEmbedding,
    /// Email a new user the link that verifies their address (the job's subject is the user).
    SendEmailVerification,
    /// Email a user the link that sets a new password (the job's subject is the user).
    SendPasswordReset,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 4] = [
        Self::NotifyMarketCreated,
        Self::IndexMarketEmbedding,
        Self::SendEmailVerification,
        Self::SendPasswordReset,
    ];

    /// The kind's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotifyMarketCreated => "notify_market_created",
            Self::IndexMarketEmbedding => "index_market_embedding",
            Self::SendEmailVerification => "send_email_verification",
            Self::SendPasswordReset => "send_password_reset",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ValidationError::new("kind", format!("unknown job kind {s:?}")))
    }
}

/// Work to schedule, about one market or (account emails) one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewJob {
    /// What to do.
    pub kind: JobKind,
    /// The id of what it concerns: a market, or a user for the account emails; the kind says
    /// which.
    pub subject: uuid::Uuid,
}

impl NewJob {
    /// `kind` of work about `market_id`.
    pub fn new(kind: JobKind, market_id: MarketId) -> Self {
        Self {
            kind,
            subject: market_id.as_uuid(),
        }
    }

    /// `kind` of work about user `user_id`.
    pub fn for_user(kind: JobKind, user_id: UserId) -> Self {
        Self {
            kind,
            subject: user_id.as_uuid(),
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What to do.
    pub kind: JobKind,
    /// The id of what it concerns (see [`NewJob::subject`]).
    pub subject: uuid::Uuid,
    /// This attempt's number, from 1; also the claim's fencing token.
    pub attempt: u32,
    /// How long the job waited between becoming due (queued, retried or its last lease run
    /// out) and this claim, by the queue's clock.
    pub waited: Duration,
}

impl Job {
    /// Attempt number `attempt` of job `id` about `subject`, as a queue hands it out.
    pub fn new(id: JobId, kind: JobKind, subject: uuid::Uuid, attempt: u32) -> Self {
        Self {
            id,
            kind,
            subject,
            attempt,
            waited: Duration::ZERO,
        }
    }

    /// The subject as the market a market job concerns.
    pub fn market_id(&self) -> MarketId {
        self.subject.into()
    }

    /// The subject as the user an account email concerns.
    pub fn user_id(&self) -> UserId {
        self.subject.into()
    }

    /// The same claim, which waited `waited` after it was due.
    pub fn with_wait(self, waited: Duration) -> Self {
        Self { waited, ..self }
    }
}

/// Where the jobs of one kind stand, for operators and gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindStats {
    /// The kind.
    pub kind: JobKind,
    /// Jobs waiting, due or not.
    pub queued: u64,
    /// Jobs claimed, whether or not their lease still runs.
    pub running: u64,
    /// Jobs that gave up.
    pub dead: u64,
    /// How long the longest-waiting due job has been due; `None` when none is due.
    pub oldest_due: Option<Duration>,
    /// Jobs completed within the window asked for.
    pub completed: u64,
}

impl KindStats {
    /// Nothing yet of `kind`; a queue fills in the counts.
    pub fn new(kind: JobKind) -> Self {
        Self {
            kind,
            queued: 0,
            running: 0,
            dead: 0,
            oldest_due: None,
            completed: 0,
        }
    }

    /// Every kind's stats, in [`JobKind::ALL`]'s order, from a queue's counts, as it stores
    /// them: of each kind's jobs in each state (`queued`, with how long its oldest due job has
    /// waited; `running`; `dead`) and of its `completed` ones. A state it does not know is left
    /// out.
    ///
    /// # Errors
    /// If a kind is not a [`JobKind`]'s name.
    pub fn from_counts<'a>(
        counts: impl IntoIterator<Item = (&'a str, &'a str, u64, Option<Duration>)>,
    ) -> Result<Vec<Self>, ValidationError> {
        let mut stats: Vec<Self> = JobKind::ALL.into_iter().map(Self::new).collect();
        for (kind, state, count, oldest_due) in counts {
            let kind: JobKind = kind.parse()?;
            let Some(of_kind) = stats.iter_mut().find(|stats| stats.kind == kind) else {
                continue;
            };
            match state {
                "queued" => {
                    of_kind.queued = count;
                    of_kind.oldest_due = oldest_due;
                }
                "running" => of_kind.running = count,
                "dead" => of_kind.dead = count,
                "completed" => of_kind.completed = count,
                _ => {}
            }
        }
        Ok(stats)
    }
}

/// A job that failed every attempt, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadJob {
    /// Its id.
    pub id: JobId,
    /// What it did.
    pub kind: JobKind,
    /// The id of what it concerned (see [`NewJob::subject`]).
    pub subject: uuid::Uuid,
    /// How many attempts it had.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it gave up.
    pub died_at: DateTime<Utc>,
}

impl DeadJob {
    /// Job `id` about `subject`, which gave up at `died_at` after `attempts` attempts, the last with `last_error`.
    pub fn new(
        id: JobId,
        kind: JobKind,
        subject: uuid::Uuid,
        attempts: u32,
        last_error: String,
        died_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            kind,
            subject,
            attempts,
            last_error,
            died_at,
        }
    }
}

/// What to do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Give up: park the job for an operator.
    Dead,
}

/// The job queue. Claims are leases: a job whose worker died is claimable again once its lease
/// expires, and an attempt's outcome only counts if the job is still on that attempt. A worker
/// keeps the jobs it runs by renewing their leases, so leases can be short and a dead worker's
/// jobs come back soon.
#[async_trait]
pub trait JobQueue: Send + Sync + fmt::Debug + 'static {
    /// Claims up to `limit` due jobs of `kind` (queued and due, or running with an expired
    /// lease), longest due first, for `lease`; concurrent claimers never get the same job. Each
    /// says how long it waited since it was due ([`Job::waited`]).
    async fn claim(
        &self,
        kind: JobKind,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, RepositoryError>;

    /// Extends the leases of `jobs` to `lease` from now, for those still on that attempt (the
    /// fencing of outcomes); returns the ids renewed. A job missing from the answer was taken
    /// over, or finished.
    async fn renew(&self, jobs: &[Job], lease: Duration) -> Result<Vec<JobId>, RepositoryError>;

    /// The attempt succeeded: the job is done (and counted in [`JobQueue::stats`]'
    /// completions until [`JobQueue::prune`] forgets it).
    async fn complete(&self, job: &Job) -> Result<(), RepositoryError>;

    /// The attempt failed with `error`.
    async fn fail(&self, job: &Job, error: &str, failure: Failure) -> Result<(), RepositoryError>;

    /// Gives claimed jobs back, due now (on shutdown, instead of waiting for their lease); like
    /// an outcome, only for jobs still on that attempt.
    async fn release(&self, jobs: &[Job]) -> Result<(), RepositoryError>;

    /// Dead jobs, newest first, at most `limit`.
    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, RepositoryError>;

    /// Queues dead jobs again (one, or all when `id` is `None`); returns how many.
    async fn retry_dead(&self, id: Option<JobId>) -> Result<u64, RepositoryError>;

    /// Every kind's counts, with the jobs completed within the last `window`, in
    /// [`JobKind::ALL`]'s order.
    async fn stats(&self, window: Duration) -> Result<Vec<KindStats>, RepositoryError>;

    /// Forgets completions older than `keep`; returns how many.
    async fn prune(&self, keep: Duration) -> Result<u64, RepositoryError>;
}

forward_through_arc!(JobQueue {
    async fn claim(&self, kind: JobKind, limit: usize, lease: Duration) -> Result<Vec<Job>, RepositoryError>;
    async fn renew(&self, jobs: &[Job], lease: Duration) -> Result<Vec<JobId>, RepositoryError>;
    async fn complete(&self, job: &Job) -> Result<(), RepositoryError>;
    async fn fail(&self, job: &Job, error: &str, failure: Failure) -> Result<(), RepositoryError>;
    async fn release(&self, jobs: &[Job]) -> Result<(), RepositoryError>;
    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, RepositoryError>;
    async fn retry_dead(&self, id: Option<JobId>) -> Result<u64, RepositoryError>;
    async fn stats(&self, window: Duration) -> Result<Vec<KindStats>, RepositoryError>;
    async fn prune(&self, keep: Duration) -> Result<u64, RepositoryError>;
});

/// How a worker learns that jobs may have been queued, so it claims them at once instead of at
/// its next poll. Wakeups are hints: a worker always claims after `wait` returns, finds nothing
/// when the hint was wrong, and never relies on one arriving (a lost notification costs at most
/// `timeout`).
#[async_trait]
pub trait JobWakeups: Send + Sync + fmt::Debug + 'static {
    /// Returns when jobs may have been queued, or after `timeout`, whichever comes first. A
    /// listener that has failed reconnects on a later call; meanwhile this waits out `timeout`,
    /// so the worker degrades to polling rather than spinning or stopping.
    async fn wait(&self, timeout: Duration);
}

forward_through_arc!(JobWakeups {
    async fn wait(&self, timeout: Duration) -> ();
});

/// A market was created: tell its creator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MarketCreatedNotice {
    /// Deduplication key: the same notice sent twice carries the same key (the job id).
    pub idempotency_key: String,
    /// Recipient address.
    pub to: String,
    /// Recipient's display name.
    pub to_name: String,
    /// The market's name.
    pub market_name: String,
    /// A link to the market.
    pub market_url: String,
}

impl MarketCreatedNotice {
    /// The notice for market `market_name` at `market_url`, to `to_name` at `to`, sent once per
    /// `idempotency_key`.
    pub fn new(
        idempotency_key: impl Into<String>,
        to: impl Into<String>,
        to_name: impl Into<String>,
        market_name: impl Into<String>,
        market_url: impl Into<String>,
    ) -> Self {
        Self {
            idempotency_key: idempotency_key.into(),
            to: to.into(),
            to_name: to_name.into(),
            market_name: market_name.into(),
            market_url: market_url.into(),
        }
    }
}

/// An email carrying a single-use account link: its token is in the URL and nowhere else.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountLinkNotice {
    /// Deduplication key (the job id), as for [`MarketCreatedNotice::idempotency_key`].
    pub idempotency_key: String,
    /// Recipient address.
    pub to: String,
    /// Recipient's display name.
    pub to_name: String,
    /// What the link is for.
    pub purpose: TokenPurpose,
    /// The link, token included.
    pub url: String,
    /// How long the link works.
    pub valid_for: Duration,
}

impl AccountLinkNotice {
    /// The `purpose` link `url`, valid for `valid_for`, to `to_name` at `to`, sent once per
    /// `idempotency_key`.
    pub fn new(
        idempotency_key: impl Into<String>,
        to: impl Into<String>,
        to_name: impl Into<String>,
        purpose: TokenPurpose,
        url: impl Into<String>,
        valid_for: Duration,
    ) -> Self {
        Self {
            idempotency_key: idempotency_key.into(),
            to: to.into(),
            to_name: to_name.into(),
            purpose,
            url: url.into(),
            valid_for,
        }
    }
}

/// The link is a credential: `Debug` leaves it (and the address) out.
impl fmt::Debug for AccountLinkNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountLinkNotice")
            .field("idempotency_key", &self.idempotency_key)
            .field("purpose", &self.purpose)
            .field("valid_for", &self.valid_for)
            .finish_non_exhaustive()
    }
}

/// Why a notification was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// Transient: connection refused, timeout, 4xx SMTP reply: worth retrying.
    #[error("notification could not be sent now")]
    Unavailable(#[source] BoxError),
    /// Permanent: e.g. an invalid address, 5xx SMTP reply: retrying will not help.
    #[error("notification was refused: {0}")]
    Rejected(String),
}

/// Sends notifications to users.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug + 'static {
    /// Tells a creator their market is live.
    async fn market_created(&self, notice: &MarketCreatedNotice) -> Result<(), NotifyError>;

    /// Sends a user a single-use account link (email verification, password reset).
    async fn account_link(&self, notice: &AccountLinkNotice) -> Result<(), NotifyError>;
}

forward_through_arc!(Notifier {
    async fn market_created(&self, notice: &MarketCreatedNotice) -> Result<(), NotifyError>;
    async fn account_link(&self, notice: &AccountLinkNotice) -> Result<(), NotifyError>;
});

/// The delay before retry number `attempt` (from 1): `base * 2^(attempt-1)`, capped at `max`,
/// with up to 25% taken off by `jitter` (a number in `0.0..1.0`) so that jobs that failed
/// together do not retry together.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let delay = base.saturating_mul(1 << exponent).min(max);
    delay.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>(), Ok(kind));
        }
        assert!("send_spam".parse::<JobKind>().is_err());
    }

    #[test]
    fn stats_come_from_counts_by_kind_and_state_for_every_kind() {
        let (notify, index) = (JobKind::NotifyMarketCreated, JobKind::IndexMarketEmbedding);
        let due = Some(Duration::from_secs(3));
        let stats = KindStats::from_counts([
            (index.as_str(), "queued", 4, due),
            (index.as_str(), "completed", 7, None),
            (notify.as_str(), "dead", 1, None),
            (notify.as_str(), "finished", 9, None),
        ])
        .unwrap();
        let mut indexed = KindStats::new(index);
        (indexed.queued, indexed.oldest_due, indexed.completed) = (4, due, 7);
        let mut notified = KindStats::new(notify);
        notified.dead = 1;
        let quiet =
            [JobKind::SendEmailVerification, JobKind::SendPasswordReset].map(KindStats::new);
        assert_eq!(
            stats,
            [notified, indexed, quiet[0].clone(), quiet[1].clone()]
        );
        assert!(KindStats::from_counts([("send_spam", "queued", 1, None)]).is_err());
    }

    #[test]
    fn backoff_grows_then_caps_and_jitter_only_shortens() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (1..=8)
            .map(|attempt| backoff(attempt, base, max, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(3, base, max, 1.0), Duration::from_secs(3));
        assert_eq!(backoff(1000, base, max, 0.0), max, "no overflow");
    }
}
