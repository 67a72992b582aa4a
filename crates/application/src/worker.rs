//! The job worker: claims due jobs from the outbox, runs them with bounded concurrency, retries
//! transient failures with exponential backoff and jitter, and parks the hopeless as dead.
//!
//! Any number of workers can run against one queue (inside `markets serve`, or alone as
//! `markets worker`): claims are leases, so workers never run one job at the same time, and a job
//! whose worker died runs again once its lease expires. Leases are short and a heartbeat renews
//! those of the jobs a worker holds, so a job may run longer than its lease while its worker
//! lives, and a dead worker's jobs are retried within one lease. Each kind of job has its own
//! slots ([`Lanes`]), so one kind never waits behind another. Between claims a worker waits on
//! its [`JobWakeups`] (a notification, or the poll interval).
//!
//! An outcome (or a release at shutdown) the queue refuses, as during a database outage, is not
//! dropped: the worker keeps it and tries again with capped exponential backoff and jitter until
//! the queue answers, for as long as the job's lease lasts, so the job does not sit `running`
//! for the rest of its lease once the database is back. Past the lease another worker may have
//! taken the job over, and the queue's fencing makes the overtaken attempt's write count for
//! nothing, so a late or repeated write is harmless.

use markets_domain::RepositoryError;
use markets_domain::error::report;
use markets_domain::jobs::{Failure, Job, JobId, JobKind, JobQueue, JobWakeups, backoff};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::handlers::{JobError, JobHandlers};

/// How many jobs of each kind a worker runs at once. Each kind has slots of its own (a lane),
/// so a flood of one kind (embeddings behind a slow provider) never holds up another
/// (notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lanes(HashMap<JobKind, usize>);

impl Lanes {
    /// `per_kind` jobs at once of each kind named; one at a time of a kind not named, and of
    /// one named with 0.
    pub fn new(per_kind: impl IntoIterator<Item = (JobKind, usize)>) -> Self {
        Self(per_kind.into_iter().collect())
    }

    /// How many jobs of `kind` run at once.
    pub fn of(&self, kind: JobKind) -> usize {
        self.0.get(&kind).copied().unwrap_or(1).max(1)
    }
}

impl Default for Lanes {
    fn default() -> Self {
        Self::new([
            (JobKind::NotifyMarketCreated, 8),
            (JobKind::IndexMarketEmbedding, 2),
            (JobKind::SendEmailVerification, 4),
            (JobKind::SendPasswordReset, 4),
        ])
    }
}

/// How a worker paces its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Jobs run at once, per kind.
    pub lanes: Lanes,
    /// How long a claim lasts unless renewed; the worker renews the leases of the jobs it holds
    /// every third of it, so a worker that dies loses its jobs to another within one lease.
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
    /// How often the queue's depth is sampled into the `jobs_queue_depth` gauges.
    pub stats_interval: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            lanes: Lanes::default(),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(20),
            stats_interval: Duration::from_secs(5),
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

/// The window of the completions the stats count (the throughput `markets jobs stats` shows).
pub const THROUGHPUT_WINDOW: Duration = Duration::from_secs(60);

/// How long completions are kept for the stats.
const COMPLETIONS_KEPT: Duration = Duration::from_secs(600);

/// A job this worker holds: claimed, and its outcome not yet recorded.
#[derive(Debug)]
struct Holding {
    job: Job,
    /// Whether its handler is still running (else its outcome is being recorded).
    running: bool,
    /// When its lease ends as far as this worker knows: the queue's lease is taken, or renewed,
    /// after this was set, so it never outlasts the queue's.
    lease_ends: Instant,
}

/// The jobs this worker holds, to renew their leases and to give back at shutdown what has not
/// run.
type Held = Arc<Mutex<HashMap<JobId, Holding>>>;

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
    /// the shutdown grace, and releases the rest for another worker. Dropped instead (its task
    /// aborted), it stops renewing leases, so its jobs go to another worker within one lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let lanes: Vec<(JobKind, Arc<Semaphore>)> = JobKind::ALL
            .into_iter()
            .map(|kind| (kind, Arc::new(Semaphore::new(self.settings.lanes.of(kind)))))
            .collect();
        let held: Held = Arc::default();
        // Aborted when this future ends or is dropped.
        let mut background = JoinSet::new();
        background.spawn(heartbeat(
            self.queue.clone(),
            held.clone(),
            self.settings.lease,
        ));
        background.spawn(sample_depth(
            self.queue.clone(),
            self.settings.stats_interval,
        ));
        let mut tasks = JoinSet::new();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            let mut busy = false;
            for (kind, permits) in &lanes {
                busy |= self.fill(*kind, permits, &held, &mut tasks).await;
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
        self.drain(tasks, held).await;
    }

    /// Claims as many jobs of `kind` as its lane has free slots and starts them; whether it
    /// claimed any.
    async fn fill(
        &self,
        kind: JobKind,
        permits: &Arc<Semaphore>,
        held: &Held,
        tasks: &mut JoinSet<()>,
    ) -> bool {
        let free = permits.available_permits();
        if free == 0 {
            return false;
        }
        // Taken before the claim, so the worker's idea of the lease never outlasts the queue's.
        let lease_ends = Instant::now() + self.settings.lease;
        let claimed = self.claim(kind, free).await;
        let busy = !claimed.is_empty();
        for job in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            metrics::histogram!("job_wait_seconds", "kind" => kind.as_str())
                .record(job.waited.as_secs_f64());
            let holding = Holding {
                job: job.clone(),
                running: true,
                lease_ends,
            };
            lock(held).insert(job.id, holding);
            let attempt = self.attempt_runner(held.clone());
            tasks.spawn(async move {
                attempt.run(&job).await;
                drop(permit);
            });
        }
        busy
    }

    async fn claim(&self, kind: JobKind, free: usize) -> Vec<Job> {
        self.queue
            .claim(kind, free, self.settings.lease)
            .await
            .unwrap_or_else(|error| {
                warn!(error = %report(&error), %kind, "claiming jobs failed; will retry");
                Vec::new()
            })
    }

    fn attempt_runner(&self, held: Held) -> AttemptRunner<Q> {
        AttemptRunner {
            queue: self.queue.clone(),
            handlers: self.handlers.clone(),
            settings: self.settings.clone(),
            held,
        }
    }

    /// Waits out the grace, then gives back the jobs whose handler is still running; jobs whose
    /// outcome is still waiting for the queue cannot be given back (they did run), so they are
    /// only counted in the log.
    async fn drain(&self, mut tasks: JoinSet<()>, held: Held) {
        let grace = self.settings.shutdown_grace;
        let finished =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            let live = tasks.len();
            tasks.abort_all();
            let unfinished: Vec<Job> = lock(&held)
                .values()
                .filter(|holding| holding.running)
                .map(|holding| holding.job.clone())
                .collect();
            let unrecorded = live.saturating_sub(unfinished.len());
            if unrecorded > 0 {
                error!(
                    jobs = unrecorded,
                    "shutdown with outcomes the job queue has not taken (is it down?); \
                     those jobs stay running until their leases expire, then run again"
                );
            }
            let deadline = Instant::now() + grace;
            self.release(&unfinished, deadline).await;
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
        let released = persist(
            "releasing jobs",
            || deadline,
            || self.queue.release(unfinished),
        );
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

/// Renews the leases of every job in `held`, every third of `lease`, forever (the worker aborts
/// it). A renewal the queue refuses is tried again at the next beat, so one failure costs
/// nothing while the lease lasts; a job the queue no longer has on its attempt was taken over
/// (this worker stalled past its lease) and is logged.
async fn heartbeat<Q: JobQueue>(queue: Arc<Q>, held: Held, lease: Duration) {
    let period = (lease / 3).max(Duration::from_millis(1));
    let mut beats = tokio::time::interval_at(Instant::now() + period, period);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beats.tick().await;
        let jobs: Vec<Job> = lock(&held)
            .values()
            .map(|holding| holding.job.clone())
            .collect();
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let renewed = match queue.renew(&jobs, lease).await {
            Ok(renewed) => renewed,
            Err(error) => {
                warn!(error = %report(&error), jobs = jobs.len(), "renewing job leases failed; will retry");
                continue;
            }
        };
        let mut held = lock(&held);
        for id in &renewed {
            if let Some(holding) = held.get_mut(id) {
                holding.lease_ends = started + lease;
            }
        }
        for job in jobs.iter().filter(|job| !renewed.contains(&job.id)) {
            // Finished meanwhile, or taken over.
            if held.contains_key(&job.id) {
                warn!(job_id = %job.id, kind = %job.kind, "lost the lease of a running job; another worker may run it too");
            }
        }
    }
}

/// Samples the queue into the `jobs_queue_depth{kind,state}` and `jobs_oldest_due_seconds{kind}`
/// gauges every `interval`, forever (the worker aborts it), and forgets old completions.
async fn sample_depth<Q: JobQueue>(queue: Arc<Q>, interval: Duration) {
    loop {
        match queue.stats(THROUGHPUT_WINDOW).await {
            Ok(stats) => {
                for kind in stats {
                    let name = kind.kind.as_str();
                    for (state, depth) in [
                        ("queued", kind.queued),
                        ("running", kind.running),
                        ("dead", kind.dead),
                    ] {
                        metrics::gauge!("jobs_queue_depth", "kind" => name, "state" => state)
                            .set(depth as f64);
                    }
                    let oldest = kind.oldest_due.unwrap_or_default().as_secs_f64();
                    metrics::gauge!("jobs_oldest_due_seconds", "kind" => name).set(oldest);
                }
            }
            Err(error) => debug!(error = %report(&error), "sampling the job queue failed"),
        }
        if let Err(error) = queue.prune(COMPLETIONS_KEPT).await {
            debug!(error = %report(&error), "forgetting old job completions failed");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs `write` until it succeeds or the next try would start after `deadline()` (asked anew
/// each time: a renewed lease moves it), waiting between tries with capped exponential backoff
/// and jitter; returns the last error if it never did. Every queue write is fenced by attempt,
/// so repeating one is harmless.
async fn persist<D, F, Fut>(what: &str, deadline: D, mut write: F) -> Result<(), RepositoryError>
where
    D: Fn() -> Instant,
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
        if Instant::now() + delay > deadline() {
            return Err(error);
        }
        if tries == 1 {
            warn!(error = %report(&error), "{what} failed; trying again until the job queue answers");
        }
        tokio::time::sleep(delay).await;
    }
}

fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<JobId, Holding>> {
    // Every write is one insert, update or remove: a panic elsewhere cannot leave the map
    // half-updated.
    held.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one attempt and records its outcome.
#[derive(Debug)]
struct AttemptRunner<Q> {
    queue: Arc<Q>,
    handlers: JobHandlers,
    settings: WorkerSettings,
    held: Held,
}

impl<Q: JobQueue> AttemptRunner<Q> {
    /// Runs `job` and records its outcome, trying until its lease ends if the queue refuses it.
    async fn run(&self, job: &Job) {
        let started = Instant::now();
        let outcome = self.handlers.run(job).await;
        metrics::histogram!("job_run_seconds", "kind" => job.kind.as_str())
            .record(started.elapsed().as_secs_f64());
        // It ran: from here shutdown must not release it as if it had not.
        if let Some(holding) = lock(&self.held).get_mut(&job.id) {
            holding.running = false;
        }
        let verdict = self.judge(job, outcome);
        let recorded = persist(
            "recording the job's outcome",
            || self.lease_ends(job),
            || self.record(job, &verdict),
        );
        if let Err(error) = recorded.await {
            warn!(job_id = %job.id, error = %report(&error), "recording the job's outcome failed until its lease ran out; it will run again");
        }
        lock(&self.held).remove(&job.id);
    }

    /// When `job`'s lease ends, as last renewed.
    fn lease_ends(&self, job: &Job) -> Instant {
        lock(&self.held)
            .get(&job.id)
            .map_or_else(Instant::now, |holding| holding.lease_ends)
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
