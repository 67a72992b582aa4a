//! The job worker: claims due jobs from the outbox, runs them with bounded concurrency, retries
//! transient failures with exponential backoff and jitter, and parks the hopeless as dead.
//!
//! It runs inside `markets serve` and alone as `markets worker`, any number of times: claims
//! are leases (on PostgreSQL taken with `SKIP LOCKED`), so instances never run one job at the
//! same time, and a
//! job whose worker died runs again once its lease expires. Handlers are idempotent: a
//! notification carries the job id as its idempotency key, an embedding is recomputed.

use markets_domain::error::report;
use markets_domain::jobs::{
    Failure, Job, JobId, JobKind, JobQueue, MarketCreatedNotice, Notifier, NotifyError, backoff,
};
use markets_domain::market::MarketRepository;
use markets_domain::user::UserRepository;
use markets_postgres::JobListener;
use secrecy::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};
use url::Url;

use crate::settings::JobSettings;
use crate::wiring::AppIndexService;

/// Why a job's attempt failed.
#[derive(Debug)]
enum JobError {
    /// Worth another attempt.
    Transient(String),
    /// Another attempt would fail the same way.
    Permanent(String),
}

/// What the jobs need.
#[derive(Debug, Clone)]
pub struct Handlers {
    /// Markets, to describe them.
    pub markets: Arc<dyn MarketRepository>,
    /// Users, to address them.
    pub users: Arc<dyn UserRepository>,
    /// Where notifications go.
    pub notifier: Arc<dyn Notifier>,
    /// The search indexer.
    pub indexer: AppIndexService,
    /// The service's public address, for links in notifications.
    pub public_url: Url,
}

impl Handlers {
    async fn run(&self, job: &Job) -> Result<(), JobError> {
        match job.kind {
            JobKind::NotifyMarketCreated => self.notify_market_created(job).await,
            JobKind::IndexMarketEmbedding => self
                .indexer
                .index_pending(64)
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
            format!(
                "{}/markets/{}",
                self.public_url.as_str().trim_end_matches('/'),
                market.id
            ),
        );
        self.notifier
            .market_created(&notice)
            .await
            .map_err(|error| match error {
                NotifyError::Unavailable(_) => JobError::Transient(report(&error)),
                NotifyError::Rejected(reason) => JobError::Permanent(reason),
                other => JobError::Transient(report(&other)),
            })
    }
}

/// How a worker learns that jobs were queued, besides polling every `poll_interval_ms`.
#[derive(Debug, Clone)]
pub enum Wakeups {
    /// PostgreSQL's `LISTEN jobs` on a connection to this URL.
    Listen(SecretString),
    /// Polling alone.
    Poll,
}

/// The worker: a queue, handlers, and how to pace them.
#[derive(Debug)]
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    handlers: Handlers,
    settings: JobSettings,
    wakeups: Wakeups,
}

/// The jobs being run, to give them back if shutdown cannot wait for them.
type Running = Arc<Mutex<HashMap<JobId, Job>>>;

impl Worker {
    /// A worker over `queue`, woken by `wakeups`.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        handlers: Handlers,
        settings: JobSettings,
        wakeups: Wakeups,
    ) -> Self {
        Self {
            queue,
            handlers,
            settings,
            wakeups,
        }
    }

    /// Runs until `shutdown` turns true: then stops claiming, lets running jobs finish within
    /// `shutdown_grace`, and releases the rest for another worker.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let running: Running = Arc::default();
        let mut tasks = JoinSet::new();
        let mut listener: Option<JobListener> = None;
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        while !*shutdown.borrow() {
            let claimed = self.claim(permits.available_permits()).await;
            let busy = !claimed.is_empty();
            for job in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (worker, running) = (self.attempt_runner(), running.clone());
                running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(job.id, job.clone());
                tasks.spawn(async move {
                    worker.attempt(&job).await;
                    running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&job.id);
                    drop(permit);
                });
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = wait_for_jobs(&mut listener, &self.wakeups, poll) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.drain(tasks, running).await;
    }

    async fn claim(&self, free: usize) -> Vec<Job> {
        if free == 0 {
            return Vec::new();
        }
        let lease = Duration::from_secs(self.settings.lease_secs);
        self.queue.claim(free, lease).await.unwrap_or_else(|error| {
            warn!(error = %report(&error), "claiming jobs failed; will retry");
            Vec::new()
        })
    }

    fn attempt_runner(&self) -> AttemptRunner {
        AttemptRunner {
            queue: self.queue.clone(),
            handlers: self.handlers.clone(),
            settings: self.settings.clone(),
        }
    }

    async fn drain(&self, mut tasks: JoinSet<()>, running: Running) {
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tasks.abort_all();
            let unfinished: Vec<Job> = running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            warn!(
                jobs = unfinished.len(),
                "shutdown: releasing unfinished jobs"
            );
            if let Err(error) = self.queue.release(&unfinished).await {
                warn!(error = %report(&error), "releasing jobs failed; their leases will expire");
            }
        }
        info!("job worker stopped");
    }
}

/// Waits for a `NOTIFY jobs` or the poll interval, whichever comes first; reconnects the
/// listener lazily and falls back to plain polling while it cannot.
async fn wait_for_jobs(listener: &mut Option<JobListener>, wakeups: &Wakeups, poll: Duration) {
    let Wakeups::Listen(url) = wakeups else {
        return tokio::time::sleep(poll).await;
    };
    if listener.is_none() {
        *listener = JobListener::connect(url).await.ok();
    }
    match listener {
        Some(connected) => {
            if connected.wait(poll).await.is_err() {
                *listener = None;
                tokio::time::sleep(poll).await;
            }
        }
        None => tokio::time::sleep(poll).await,
    }
}

/// Runs one attempt and records its outcome.
#[derive(Debug, Clone)]
struct AttemptRunner {
    queue: Arc<dyn JobQueue>,
    handlers: Handlers,
    settings: JobSettings,
}

impl AttemptRunner {
    async fn attempt(&self, job: &Job) {
        let outcome = self.handlers.run(job).await;
        let counted = |outcome: &'static str| {
            metrics::counter!("jobs_total", "kind" => job.kind.as_str(), "outcome" => outcome)
                .increment(1);
        };
        let recorded = match outcome {
            Ok(()) => {
                counted("succeeded");
                info!(job_id = %job.id, kind = %job.kind, outcome = "succeeded", "job done");
                self.queue.complete(job).await
            }
            Err(JobError::Transient(error)) if job.attempt < self.settings.max_attempts => {
                let delay = backoff(
                    job.attempt,
                    Duration::from_millis(self.settings.retry_base_ms),
                    Duration::from_millis(self.settings.retry_max_ms),
                    rand::random::<f64>(),
                );
                counted("retried");
                warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempt, ?delay, %error, outcome = "retried", "job failed; will retry");
                self.queue.fail(job, &error, Failure::RetryIn(delay)).await
            }
            Err(JobError::Transient(error) | JobError::Permanent(error)) => {
                counted("dead");
                warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempt, %error, outcome = "dead", "job failed for good");
                self.queue.fail(job, &error, Failure::Dead).await
            }
        };
        if let Err(error) = recorded {
            warn!(job_id = %job.id, error = %report(&error), "recording the job's outcome failed; its lease will expire");
        }
    }
}
