//! The job outbox of [`InMemoryStore`] as a [`JobQueue`], and a [`Notifier`] that records what
//! it is asked to send.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::InMemoryStore;
use crate::error::RepositoryError;
use crate::jobs::{
    AccountLinkNotice, DeadJob, Failure, Job, JobId, JobKind, JobQueue, KindStats,
    MarketCreatedNotice, NewJob, Notifier, NotifyError,
};

/// Where a queued job stands.
#[derive(Debug, Clone, PartialEq)]
enum JobState {
    /// Waiting until `due`.
    Queued { due: DateTime<Utc> },
    /// Claimed until `until`.
    Running { until: DateTime<Utc> },
    /// Gave up at `at`.
    Dead { at: DateTime<Utc>, error: String },
}

/// A job in the outbox, as the store keeps it.
#[derive(Debug, Clone)]
pub(super) struct QueuedJob {
    id: JobId,
    pub(super) job: NewJob,
    attempts: u32,
    state: JobState,
}

impl QueuedJob {
    /// `job`, due at `now`, never attempted.
    pub(super) fn new(job: NewJob, now: DateTime<Utc>) -> Self {
        Self {
            id: JobId::new(),
            job,
            attempts: 0,
            state: JobState::Queued { due: now },
        }
    }

    /// When it became due, if it is claimable at `now`.
    fn due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.state {
            JobState::Queued { due } | JobState::Running { until: due } if *due <= now => {
                Some(*due)
            }
            _ => None,
        }
    }

    /// Whether `job` is this job's current, running attempt (the queue's fencing).
    fn is_attempt(&self, job: &Job) -> bool {
        self.id == job.id
            && self.attempts == job.attempt
            && matches!(self.state, JobState::Running { .. })
    }

    fn claimed(&self) -> Job {
        Job::new(self.id, self.job.kind, self.job.subject, self.attempts)
    }
}

/// What the store tells the time by: leases, delays and completions follow it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The store's clock: the system's unless a test set its own.
#[derive(Clone, Default)]
pub(super) struct StoreClock(Option<Clock>);

impl StoreClock {
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.0.as_ref().map_or_else(Utc::now, |clock| clock())
    }
}

impl std::fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "custom" } else { "system" })
    }
}

impl InMemoryStore {
    /// While `down`, every [`JobQueue`] call fails as unavailable and changes nothing, like a
    /// database that is down; the other ports keep answering.
    pub fn set_jobs_down(&self, down: bool) {
        self.state().jobs_down = down;
    }

    /// Tells the job queue's time by `clock` from now on (e.g. one that follows tokio's paused
    /// clock, so that leases run out in simulated time).
    pub fn set_clock(&self, clock: Clock) {
        self.state().clock = StoreClock(Some(clock));
    }

    /// The state, or the outage error while the job queue is down.
    fn queue_state(&self) -> Result<MutexGuard<'_, super::State>, RepositoryError> {
        let state = self.state();
        if state.jobs_down {
            return Err(RepositoryError::unavailable(
                "database",
                "the job queue is down",
            ));
        }
        Ok(state)
    }
}

fn plus(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

#[async_trait]
impl JobQueue for InMemoryStore {
    async fn claim(
        &self,
        kind: JobKind,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, RepositoryError> {
        let mut state = self.queue_state()?;
        let now = state.clock.now();
        let mut due: Vec<(DateTime<Utc>, &mut QueuedJob)> = state
            .jobs
            .iter_mut()
            .filter(|queued| queued.job.kind == kind)
            .filter_map(|queued| Some((queued.due(now)?, queued)))
            .collect();
        due.sort_by_key(|(due, _)| *due);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(due, queued)| {
                queued.attempts += 1;
                queued.state = JobState::Running {
                    until: plus(now, lease),
                };
                queued.claimed().with_wait(elapsed(due, now))
            })
            .collect())
    }

    async fn renew(&self, jobs: &[Job], lease: Duration) -> Result<Vec<JobId>, RepositoryError> {
        let mut state = self.queue_state()?;
        let until = plus(state.clock.now(), lease);
        let mut renewed = Vec::new();
        for queued in state.jobs.iter_mut() {
            if jobs.iter().any(|job| queued.is_attempt(job)) {
                queued.state = JobState::Running { until };
                renewed.push(queued.id);
            }
        }
        Ok(renewed)
    }

    async fn complete(&self, job: &Job) -> Result<(), RepositoryError> {
        let mut state = self.queue_state()?;
        let before = state.jobs.len();
        state.jobs.retain(|queued| !queued.is_attempt(job));
        if state.jobs.len() < before {
            let now = state.clock.now();
            state.completions.push((job.kind, now));
        }
        Ok(())
    }

    async fn fail(&self, job: &Job, error: &str, failure: Failure) -> Result<(), RepositoryError> {
        let mut state = self.queue_state()?;
        let now = state.clock.now();
        if let Some(queued) = state.jobs.iter_mut().find(|queued| queued.is_attempt(job)) {
            queued.state = match failure {
                Failure::RetryIn(delay) => JobState::Queued {
                    due: plus(now, delay),
                },
                Failure::Dead => JobState::Dead {
                    at: now,
                    error: error.to_owned(),
                },
            };
        }
        Ok(())
    }

    async fn release(&self, jobs: &[Job]) -> Result<(), RepositoryError> {
        let mut state = self.queue_state()?;
        let now = state.clock.now();
        for queued in state.jobs.iter_mut() {
            if jobs.iter().any(|job| queued.is_attempt(job)) {
                // The attempt did not happen: it does not count.
                queued.attempts -= 1;
                queued.state = JobState::Queued { due: now };
            }
        }
        Ok(())
    }

    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, RepositoryError> {
        let state = self.queue_state()?;
        let mut dead: Vec<DeadJob> = state
            .jobs
            .iter()
            .filter_map(|queued| match &queued.state {
                JobState::Dead { at, error } => Some(DeadJob::new(
                    queued.id,
                    queued.job.kind,
                    queued.job.subject,
                    queued.attempts,
                    error.clone(),
                    *at,
                )),
                _ => None,
            })
            .collect();
        dead.sort_by_key(|job| std::cmp::Reverse(job.died_at));
        dead.truncate(limit);
        Ok(dead)
    }

    async fn retry_dead(&self, id: Option<JobId>) -> Result<u64, RepositoryError> {
        let mut state = self.queue_state()?;
        let mut retried = 0;
        let now = state.clock.now();
        for queued in state.jobs.iter_mut() {
            let dead = matches!(queued.state, JobState::Dead { .. });
            if dead && id.is_none_or(|id| id == queued.id) {
                queued.attempts = 0;
                queued.state = JobState::Queued { due: now };
                retried += 1;
            }
        }
        Ok(retried)
    }

    async fn stats(&self, window: Duration) -> Result<Vec<KindStats>, RepositoryError> {
        let state = self.queue_state()?;
        let now = state.clock.now();
        Ok(JobKind::ALL
            .into_iter()
            .map(|kind| {
                let mut stats = KindStats::new(kind);
                for queued in state.jobs.iter().filter(|queued| queued.job.kind == kind) {
                    match &queued.state {
                        JobState::Queued { due } => {
                            stats.queued += 1;
                            if *due <= now {
                                let age = elapsed(*due, now);
                                stats.oldest_due = stats.oldest_due.max(Some(age));
                            }
                        }
                        JobState::Running { .. } => stats.running += 1,
                        JobState::Dead { .. } => stats.dead += 1,
                    }
                }
                stats.completed = state
                    .completions
                    .iter()
                    .filter(|(done, at)| *done == kind && elapsed(*at, now) <= window)
                    .count() as u64;
                stats
            })
            .collect())
    }

    async fn prune(&self, keep: Duration) -> Result<u64, RepositoryError> {
        let mut state = self.queue_state()?;
        let now = state.clock.now();
        let before = state.completions.len();
        state
            .completions
            .retain(|(_, at)| elapsed(*at, now) <= keep);
        Ok((before - state.completions.len()) as u64)
    }
}

/// A notifier that keeps every notice it is given; it can be told to refuse the next ones.
/// Clones share what they recorded.
#[derive(Debug, Clone, Default)]
pub struct RecordingNotifier {
    state: Arc<Mutex<Recorded>>,
}

#[derive(Debug, Default)]
struct Recorded {
    sent: Vec<MarketCreatedNotice>,
    links: Vec<AccountLinkNotice>,
    failures: Vec<NotifyError>,
}

impl RecordingNotifier {
    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was sent, in order.
    pub fn sent(&self) -> Vec<MarketCreatedNotice> {
        self.recorded().sent.clone()
    }

    /// The account links sent, in order.
    pub fn links(&self) -> Vec<AccountLinkNotice> {
        self.recorded().links.clone()
    }

    /// Takes the next queued failure, if any.
    fn failure(&self) -> Result<MutexGuard<'_, Recorded>, NotifyError> {
        let mut recorded = self.recorded();
        if recorded.failures.is_empty() {
            Ok(recorded)
        } else {
            Err(recorded.failures.remove(0))
        }
    }

    /// The next call fails with `error` (calls after that use the next queued error, then
    /// succeed again).
    pub fn fail_next(&self, error: NotifyError) {
        self.recorded().failures.push(error);
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn market_created(&self, notice: &MarketCreatedNotice) -> Result<(), NotifyError> {
        self.failure()?.sent.push(notice.clone());
        Ok(())
    }

    async fn account_link(&self, notice: &AccountLinkNotice) -> Result<(), NotifyError> {
        self.failure()?.links.push(notice.clone());
        Ok(())
    }
}
