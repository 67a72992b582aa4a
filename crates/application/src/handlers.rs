//! What each kind of job does. Handlers are idempotent, because a job can run more than once
//! (at-least-once delivery): a notification carries the job id as its idempotency key, and an
//! indexing job embeds whatever pending markets it can claim (its own market among them, unless
//! another runner holds it or has done it already), the same round as the background sweep.

use chrono::Utc;
use markets_domain::auth::{NewAccountToken, TokenPurpose};
use markets_domain::error::report;
use markets_domain::jobs::{
    AccountLinkNotice, Job, JobKind, MarketCreatedNotice, Notifier, NotifyError,
};
use markets_domain::market::MarketRepository;
use markets_domain::search::{EmbeddingProvider, IndexBacklog, IndexService};
use markets_domain::user::UserRepository;
use rand::Rng;
use std::sync::Arc;
use tracing::info;

/// The indexing service as the jobs and the background indexer use it, whatever adapters the
/// composition root chose.
pub type Indexer = IndexService<Arc<dyn EmbeddingProvider>, Arc<dyn IndexBacklog>>;

/// Why a job's attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another attempt.
    Transient(String),
    /// Another attempt would fail the same way.
    Permanent(String),
}

/// What the jobs need: the stores to describe a market and address its creator, the notifier,
/// the indexer, and the service's public address for links.
#[derive(Debug, Clone)]
pub struct JobHandlers {
    markets: Arc<dyn MarketRepository>,
    users: Arc<dyn UserRepository>,
    notifier: Arc<dyn Notifier>,
    indexer: Indexer,
    public_url: String,
}

impl JobHandlers {
    /// Handlers over these ports; links in notifications start with `public_url`.
    pub fn new(
        markets: Arc<dyn MarketRepository>,
        users: Arc<dyn UserRepository>,
        notifier: Arc<dyn Notifier>,
        indexer: Indexer,
        public_url: impl Into<String>,
    ) -> Self {
        Self {
            markets,
            users,
            notifier,
            indexer,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Runs one attempt of `job`.
    ///
    /// # Errors
    /// Whether the failure is worth retrying, and why it happened.
    pub async fn run(&self, job: &Job) -> Result<(), JobError> {
        match job.kind {
            JobKind::NotifyMarketCreated => self.notify_market_created(job).await,
            JobKind::IndexMarketEmbedding => crate::indexer::index_once(&self.indexer)
                .await
                .map(drop)
                .map_err(|error| JobError::Transient(report(&error))),
            JobKind::SendEmailVerification => {
                self.send_account_link(job, TokenPurpose::EmailVerification)
                    .await
            }
            JobKind::SendPasswordReset => {
                self.send_account_link(job, TokenPurpose::PasswordReset)
                    .await
            }
            unknown => Err(JobError::Permanent(format!("no handler for {unknown}"))),
        }
    }

    /// Draws a `purpose` token for the job's user, stores its hash and emails the link. The
    /// token is made here, not when the job was queued, so the raw token is never stored: a
    /// retry sends a new link (the earlier one stays valid until it expires or one is used).
    async fn send_account_link(&self, job: &Job, purpose: TokenPurpose) -> Result<(), JobError> {
        let Some(user) = self
            .users
            .find_by_id(job.user_id())
            .await
            .map_err(transient)?
        else {
            return Ok(()); // Deleted since: nobody to write to.
        };
        if purpose == TokenPurpose::EmailVerification && user.email_verified {
            return Ok(());
        }
        // ThreadRng is a CSPRNG seeded from the OS.
        let (token, stored) =
            NewAccountToken::issue(purpose, user.id, rand::rng().random(), Utc::now());
        self.users.store_token(&stored).await.map_err(transient)?;
        let page = match purpose {
            TokenPurpose::PasswordReset => "reset-password",
            _ => "verify-email",
        };
        let notice = AccountLinkNotice::new(
            job.id.to_string(),
            String::from(user.email),
            String::from(user.display_name),
            purpose,
            format!("{}/{page}?token={}", self.public_url, token.as_str()),
            purpose.lifetime().to_std().unwrap_or_default(),
        );
        self.notifier
            .account_link(&notice)
            .await
            .map_err(notify_error)
    }

    async fn notify_market_created(&self, job: &Job) -> Result<(), JobError> {
        // A market deleted before its notification went out needs none.
        let Some(market) = self
            .markets
            .find_by_id(job.market_id())
            .await
            .map_err(transient)?
        else {
            return Ok(());
        };
        let Some(creator) = self
            .users
            .find_by_id(market.creator.id)
            .await
            .map_err(transient)?
        else {
            return Ok(());
        };
        if !creator.email_verified {
            // Mail goes only to addresses whose owner asked for it.
            info!(job = %job.id, user = %creator.id, reason = "email_unverified",
                "market notification skipped");
            return Ok(());
        }
        let notice = MarketCreatedNotice::new(
            job.id.to_string(),
            String::from(creator.email),
            String::from(creator.display_name),
            String::from(market.name),
            format!("{}/markets/{}", self.public_url, market.id),
        );
        self.notifier
            .market_created(&notice)
            .await
            .map_err(notify_error)
    }
}

fn transient(error: markets_domain::RepositoryError) -> JobError {
    JobError::Transient(report(&error))
}

/// A refused message will be refused again; anything else may go through later.
fn notify_error(error: NotifyError) -> JobError {
    match error {
        NotifyError::Rejected(reason) => JobError::Permanent(reason),
        other => JobError::Transient(report(&other)),
    }
}
