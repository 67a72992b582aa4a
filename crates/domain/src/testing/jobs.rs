//! The job outbox of [`InMemoryStore`] as a [`JobQueue`], and a [`Notifier`] that records what
//! it is asked to send.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::InMemoryStore;
use crate::error::RepositoryError;
use crate::jobs::{
    DeadJob, Failure, Job, JobId, JobQueue, MarketCreatedNotice, NewJob, Notifier, NotifyError,
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
    /// `job`, due now, never attempted.
    pub(super) fn new(job: NewJob) -> Self {
        Self {
            id: JobId::new(),
            job,
            attempts: 0,
            state: JobState::Queued { due: Utc::now() },
        }
    }

    fn claimable(&self, now: DateTime<Utc>) -> bool {
        match &self.state {
            JobState::Queued { due } => *due <= now,
            JobState::Running { until } => *until <= now,
            JobState::Dead { .. } => false,
        }
    }

    /// Whether `job` is this job's current, running attempt (the queue's fencing).
    fn is_attempt(&self, job: &Job) -> bool {
        self.id == job.id
            && self.attempts == job.attempt
            && matches!(self.state, JobState::Running { .. })
    }

    fn claimed(&self) -> Job {
        Job::new(self.id, self.job.kind, self.job.market_id, self.attempts)
    }
}

impl InMemoryStore {
    /// While `down`, every [`JobQueue`] call fails as unavailable and changes nothing, like a
    /// database that is down; the other ports keep answering.
    pub fn set_jobs_down(&self, down: bool) {
        self.state().jobs_down = down;
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

fn after(duration: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl JobQueue for InMemoryStore {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Job>, RepositoryError> {
        let now = Utc::now();
        let mut state = self.queue_state()?;
        let claimable = state.jobs.iter_mut().filter(|queued| queued.claimable(now));
        Ok(claimable
            .take(limit)
            .map(|queued| {
                queued.attempts += 1;
                queued.state = JobState::Running {
                    until: after(lease),
                };
                queued.claimed()
            })
            .collect())
    }

    async fn complete(&self, job: &Job) -> Result<(), RepositoryError> {
        self.queue_state()?
            .jobs
            .retain(|queued| !queued.is_attempt(job));
        Ok(())
    }

    async fn fail(&self, job: &Job, error: &str, failure: Failure) -> Result<(), RepositoryError> {
        let mut state = self.queue_state()?;
        if let Some(queued) = state.jobs.iter_mut().find(|queued| queued.is_attempt(job)) {
            queued.state = match failure {
                Failure::RetryIn(delay) => JobState::Queued { due: after(delay) },
                Failure::Dead => JobState::Dead {
                    at: Utc::now(),
                    error: error.to_owned(),
                },
            };
        }
        Ok(())
    }

    async fn release(&self, jobs: &[Job]) -> Result<(), RepositoryError> {
        let mut state = self.queue_state()?;
        for queued in state.jobs.iter_mut() {
            if jobs.iter().any(|job| queued.is_attempt(job)) {
                // The attempt did not happen: it does not count.
                queued.attempts -= 1;
                queued.state = JobState::Queued { due: Utc::now() };
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
                    queued.job.market_id,
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
        for queued in state.jobs.iter_mut() {
            let dead = matches!(queued.state, JobState::Dead { .. });
            if dead && id.is_none_or(|id| id == queued.id) {
                queued.attempts = 0;
                queued.state = JobState::Queued { due: Utc::now() };
                retried += 1;
            }
        }
        Ok(retried)
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

    /// The next call fails with `error` (calls after that use the next queued error, then
    /// succeed again).
    pub fn fail_next(&self, error: NotifyError) {
        self.recorded().failures.push(error);
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn market_created(&self, notice: &MarketCreatedNotice) -> Result<(), NotifyError> {
        let mut recorded = self.recorded();
        if !recorded.failures.is_empty() {
            return Err(recorded.failures.remove(0));
        }
        recorded.sent.push(notice.clone());
        Ok(())
    }
}
