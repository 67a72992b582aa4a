//! The job worker: claims due jobs from the outbox, runs them with bounded concurrency, retries
//! transient failures with exponential backoff and jitter, and parks the hopeless as dead.
//!
//! Any number of workers can run against one queue (inside `markets serve`, or alone as
//! `markets worker`): claims are leases, so workers never run one job at the same time, and a job
//! whose worker died runs again once its lease expires. Between claims a worker waits on its
//! [`JobWakeups`] (a notification, or the poll interval).

use markets_domain::error::report;
use markets_domain::jobs::{Failure, Job, JobId, JobQueue, JobWakeups, backoff};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

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
    /// Time running jobs get on shutdown before they are released.
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

/// The jobs being run, to give them back if shutdown cannot wait for them.
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
            let claimed = self.claim(permits.available_permits()).await;
            let busy = !claimed.is_empty();
            for job in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (attempt, running) = (self.attempt_runner(), running.clone());
                lock(&running).insert(job.id, job.clone());
                tasks.spawn(async move {
                    attempt.run(&job).await;
                    lock(&running).remove(&job.id);
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

    fn attempt_runner(&self) -> AttemptRunner<Q> {
        AttemptRunner {
            queue: self.queue.clone(),
            handlers: self.handlers.clone(),
            settings: self.settings.clone(),
        }
    }

    async fn drain(&self, mut tasks: JoinSet<()>, running: Running) {
        let grace = self.settings.shutdown_grace;
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tasks.abort_all();
            let unfinished: Vec<Job> = lock(&running).values().cloned().collect();
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
}

impl<Q: JobQueue> AttemptRunner<Q> {
    async fn run(&self, job: &Job) {
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
                    self.settings.retry_base,
                    self.settings.retry_max,
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
