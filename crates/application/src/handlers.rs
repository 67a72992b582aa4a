//! What each kind of job does. Handlers are idempotent, because a job can run more than once
//! (at-least-once delivery): a notification carries the job id as its idempotency key, and an
//! indexing job embeds whatever pending markets it can claim (its own market among them, unless
//! another runner holds it or has done it already), the same round as the background sweep.

use markets_domain::error::report;
use markets_domain::jobs::{Job, JobKind, MarketCreatedNotice, Notifier, NotifyError};
use markets_domain::market::MarketRepository;
use markets_domain::search::{EmbeddingProvider, IndexBacklog, IndexService};
use markets_domain::user::UserRepository;
use std::sync::Arc;

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
            unknown => Err(JobError::Permanent(format!("no handler for {unknown}"))),
        }
    }

    async fn notify_market_created(&self, job: &Job) -> Result<(), JobError> {
        let transient =
            |error: markets_domain::RepositoryError| JobError::Transient(report(&error));
        // A market deleted before its notification went out needs none.
        let Some(market) = self
            .markets
            .find_by_id(job.market_id)
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
            .map_err(|error| match error {
                NotifyError::Rejected(reason) => JobError::Permanent(reason),
                other => JobError::Transient(report(&other)),
            })
    }
}
