//! The job worker: claims due jobs from the outbox, runs them with bounded concurrency, retries
//! transient failures with exponential backoff and jitter, and parks the hopeless as dead.
//!
//! Any number of workers can run against one queue (inside `markets serve`, or alone as
//! `markets worker`): claims are leases, so workers never run one job at the same time, and a job
//! whose worker died runs again once its lease expires. Between claims a worker waits on its
//! [`JobWakeups`] (a notification, or the poll interval).
//!
//! An outcome (or a release at shutdown) the queue refuses, as during a database outage, is not
//! dropped: the worker keeps it and tries again with capped exponential backoff and jitter until
//! the queue answers, for as long as the job's lease lasts, so the job does not sit `running`
//! for the rest of its lease once the database is back. Past the lease another worker may have
//! taken the job over, and the queue's fencing makes the overtaken attempt's write count for
//! nothing, so a late or repeated write is harmless.

use markets_domain::RepositoryError;
use markets_domain::error::report;
use markets_domain::jobs::{Failure, Job, JobId, JobQueue, JobWakeups, backoff};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::handlers::{JobError, JobHandlers};

/// How a worker paces its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim lasts before another worker may take the job over.
    pub lease: Duration,
    /// The longest a worker waits between claims when nothing wakes it.
    pub poll_interval: Duration,
    /// Attempts before a job is dead.
    pub max_attempts: u32,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Time running jobs get on shutdown before they are released (releasing them then gets as
    /// long again while the queue does not answer).
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// The worker: a queue, what wakes it, the handlers, and how to pace them.
#[derive(Debug)]
pub struct Worker<Q, W> {
    queue: Arc<Q>,
    wakeups: W,
    handlers: JobHandlers,
    settings: WorkerSettings,
}

/// The first wait before writing an outcome the queue refused again: short, since the job stays
/// `running` meanwhile.
const WRITE_RETRY_BASE: Duration = Duration::from_millis(250);

/// The longest wait between two tries of one write, so a recovered queue hears soon.
const WRITE_RETRY_MAX: Duration = Duration::from_secs(10);

/// The jobs whose handler is running, to give them back if shutdown cannot wait for them.
type Running = Arc<Mutex<HashMap<JobId, Job>>>;

impl<Q: JobQueue, W: JobWakeups> Worker<Q, W> {
    /// A worker claiming from `queue`, woken by `wakeups`.
    pub fn new(queue: Q, wakeups: W, handlers: JobHandlers, settings: WorkerSettings) -> Self {
        Self {
            queue: Arc::new(queue),
            wakeups,
            handlers,
            settings,
        }
    }

    /// Runs until `shutdown` turns true: then stops claiming, lets running jobs finish within
    /// the shutdown grace, and releases the rest for another worker.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let running: Running = Arc::default();
        let mut tasks = JoinSet::new();
        while !*shutdown.borrow() {
            // Taken before the claim, so the worker's idea of the lease never outlasts the queue's.
            let lease_ends = Instant::now() + self.settings.lease;
            let claimed = self.claim(permits.available_permits()).await;
            let busy = !claimed.is_empty();
            for job in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let attempt = self.attempt_runner(running.clone());
                lock(&running).insert(job.id, job.clone());
                tasks.spawn(async move {
                    attempt.run(&job, lease_ends).await;
                    drop(permit);
                });
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                () = self.wakeups.wait(self.settings.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.drain(tasks, running).await;
    }

    async fn claim(&self, free: usize) -> Vec<Job> {
        if free == 0 {
            return Vec::new();
        }
        self.queue
            .claim(free, self.settings.lease)
            .await
            .unwrap_or_else(|error| {
                warn!(error = %report(&error), "claiming jobs failed; will retry");
                Vec::new()
            })
    }

    fn attempt_runner(&self, running: Running) -> AttemptRunner<Q> {
        AttemptRunner {
            queue: self.queue.clone(),
            handlers: self.handlers.clone(),
            settings: self.settings.clone(),
            running,
        }
    }

    /// Waits out the grace, then gives back the jobs whose handler is still running; jobs whose
    /// outcome is still waiting for the queue cannot be given back (they did run), so they are
    /// only counted in the log.
    async fn drain(&self, mut tasks: JoinSet<()>, running: Running) {
        let grace = self.settings.shutdown_grace;
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            let live = tasks.len();
            tasks.abort_all();
            let unfinished: Vec<Job> = lock(&running).values().cloned().collect();
            let unrecorded = live.saturating_sub(unfinished.len());
            if unrecorded > 0 {
                error!(
                    jobs = unrecorded,
                    "shutdown with outcomes the job queue has not taken (is it down?); \
                     those jobs stay running until their leases expire, then run again"
                );
            }
            self.release(&unfinished, Instant::now() + grace).await;
        }
        info!("job worker stopped");
    }

    async fn release(&self, unfinished: &[Job], deadline: Instant) {
        if unfinished.is_empty() {
            return;
        }
        warn!(
            jobs = unfinished.len(),
            "shutdown: releasing unfinished jobs"
        );
        let released = persist("releasing jobs", deadline, || {
            self.queue.release(unfinished)
        });
        if let Err(error) = released.await {
            error!(
                jobs = unfinished.len(),
                error = %report(&error),
                "shutdown with the job queue still down: unfinished jobs stay running until \
                 their leases expire"
            );
        }
    }
}

/// Runs `write` until it succeeds or the next try would start after `deadline`, waiting between
/// tries with capped exponential backoff and jitter; returns the last error if it never did.
/// Every queue write is fenced by attempt, so repeating one is harmless.
async fn persist<F, Fut>(what: &str, deadline: Instant, mut write: F) -> Result<(), RepositoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), RepositoryError>>,
{
    let mut tries = 0;
    loop {
        let error = match write().await {
            Ok(()) if tries > 0 => {
                info!(tries = tries + 1, "{what}: the job queue answered again");
                return Ok(());
            }
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        tries += 1;
        let delay = backoff(
            tries,
            WRITE_RETRY_BASE,
            WRITE_RETRY_MAX,
            rand::random::<f64>(),
        );
        if Instant::now() + delay > deadline {
            return Err(error);
        }
        if tries == 1 {
            warn!(error = %report(&error), "{what} failed; trying again until the job queue answers");
        }
        tokio::time::sleep(delay).await;
    }
}

fn lock(running: &Running) -> std::sync::MutexGuard<'_, HashMap<JobId, Job>> {
    // Every write is one insert or remove: a panic elsewhere cannot leave the map half-updated.
    running.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one attempt and records its outcome.
#[derive(Debug)]
struct AttemptRunner<Q> {
    queue: Arc<Q>,
    handlers: JobHandlers,
    settings: WorkerSettings,
    running: Running,
}

impl<Q: JobQueue> AttemptRunner<Q> {
    /// Runs `job` and records its outcome, trying until `lease_ends` if the queue refuses it.
    async fn run(&self, job: &Job, lease_ends: Instant) {
        let outcome = self.handlers.run(job).await;
        // It ran: from here shutdown must not release it as if it had not.
        lock(&self.running).remove(&job.id);
        let verdict = self.judge(job, outcome);
        let recorded = persist("recording the job's outcome", lease_ends, || {
            self.record(job, &verdict)
        });
        if let Err(error) = recorded.await {
            warn!(job_id = %job.id, error = %report(&error), "recording the job's outcome failed until its lease ran out; it will run again");
        }
    }

    /// What `outcome` makes of the job, counted and logged once however many writes it takes.
    fn judge(&self, job: &Job, outcome: Result<(), JobError>) -> Verdict {
        let counted = |outcome: &'static str| {
            metrics::counter!("jobs_total", "kind" => job.kind.as_str(), "outcome" => outcome)
                .increment(1);
        };
        match outcome {
            Ok(()) => {
                counted("succeeded");
                info!(job_id = %job.id, kind = %job.kind, outcome = "succeeded", "job done");
                Verdict::Complete
            }
            Err(JobError::Transient(error)) if job.attempt < self.settings.max_attempts => {
                let delay = backoff(
                    job.attempt,
                    self.settings.retry_base,
                    self.settings.retry_max,
                    rand::random::<f64>(),
                );
                counted("retried");
                warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempt, ?delay, %error, outcome = "retried", "job failed; will retry");
                Verdict::Fail(error, Failure::RetryIn(delay))
            }
            Err(JobError::Transient(error) | JobError::Permanent(error)) => {
                counted("dead");
                warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempt, %error, outcome = "dead", "job failed for good");
                Verdict::Fail(error, Failure::Dead)
            }
        }
    }

    /// Writes `verdict` to the queue.
    async fn record(&self, job: &Job, verdict: &Verdict) -> Result<(), RepositoryError> {
        match verdict {
            Verdict::Complete => self.queue.complete(job).await,
            Verdict::Fail(error, failure) => self.queue.fail(job, error, *failure).await,
        }
    }
}

/// An attempt's outcome, as the queue records it.
#[derive(Debug)]
enum Verdict {
    /// Done.
    Complete,
    /// Failed with this error.
    Fail(String, Failure),
}
