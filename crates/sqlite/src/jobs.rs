//! [`JobQueue`] on SQLite: the `jobs` table is the outbox that market writes fill in their own
//! transaction (see `SqliteMarketRepository`), and the queue workers claim from.
//!
//! A claim is one `UPDATE ... RETURNING` statement, which SQLite runs under its single write
//! lock: concurrent claimers (threads or processes) never get the same job, without
//! PostgreSQL's `SKIP LOCKED`. There is no `LISTEN/NOTIFY`: workers find new jobs by polling.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};
use markets_domain::RepositoryError;
use markets_domain::jobs::{DeadJob, Failure, Job, JobId, JobKind, JobQueue, KindStats, NewJob};
use std::time::Duration;

use crate::error::from_query;
use crate::pool::SqlitePool;
use crate::values::{Micros, SqlId};

/// Jobs in the `jobs` table.
#[derive(Debug, Clone)]
pub struct SqliteJobQueue {
    pool: SqlitePool,
}

impl SqliteJobQueue {
    /// A queue over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// Inserts `jobs` on `conn`, inside the caller's transaction, due at `now`.
pub(crate) fn enqueue(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    now: Micros,
) -> QueryResult<()> {
    for job in jobs {
        sql_query(
            "INSERT INTO jobs (id, kind, subject_id, run_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind::<Binary, _>(SqlId(JobId::new().as_uuid()))
        .bind::<Text, _>(job.kind.as_str())
        .bind::<Binary, _>(SqlId(job.subject))
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now)
        .execute(conn)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Binary)]
    id: SqlId,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Binary)]
    subject_id: SqlId,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = BigInt)]
    waited_us: i64,
}

#[derive(QueryableByName)]
struct RenewedRow {
    #[diesel(sql_type = Binary)]
    id: SqlId,
}

/// One line of the stats: a kind's count in one state (or its completions), and for queued
/// jobs when the oldest due one became due.
#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest_due_us: Option<i64>,
}

#[derive(QueryableByName)]
struct DeadRow {
    #[diesel(sql_type = Binary)]
    id: SqlId,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Binary)]
    subject_id: SqlId,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = BigInt)]
    updated_at: Micros,
}

fn kind(raw: &str) -> Result<JobKind, RepositoryError> {
    raw.parse().map_err(RepositoryError::unexpected)
}

fn attempt(raw: i32) -> u32 {
    u32::try_from(raw).unwrap_or_default()
}

fn fence(job: &Job) -> i32 {
    i32::try_from(job.attempt).unwrap_or(i32::MAX)
}

fn count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or_default())
}

fn tally(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// A claim (?1 now, ?2 the lease's end, ?3 the limit, ?4 the kind): the kind's expired leases
/// first, then its due jobs, longest due first, each through its partial index. `run_at`
/// becomes the moment the job was due (for a lease that ran out, when it ran out), which is what
/// the wait is measured from.
const CLAIM: &str = "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?1, \
         run_at = CASE WHEN state = 'running' THEN locked_until ELSE run_at END, \
         locked_until = ?2 \
     WHERE id IN ( \
         SELECT id FROM ( \
             SELECT id FROM jobs WHERE kind = ?4 AND state = 'running' AND locked_until < ?1 \
             ORDER BY locked_until LIMIT ?3) \
         UNION ALL \
         SELECT id FROM ( \
             SELECT id FROM jobs WHERE kind = ?4 AND state = 'queued' AND run_at <= ?1 \
             ORDER BY run_at LIMIT ?3) \
         LIMIT ?3) \
     RETURNING id, kind, subject_id, attempts, max(0, ?1 - run_at) AS waited_us";

/// Every kind's jobs by state, with the oldest due moment of the queued ones (?1 now), and the
/// kind's completions since ?2.
const STATS: &str = "SELECT kind, state, count(*) AS count, \
         ?1 - min(CASE WHEN run_at <= ?1 THEN run_at END) AS oldest_due_us \
     FROM jobs GROUP BY kind, state \
     UNION ALL \
     SELECT kind, 'completed', count(*), NULL FROM job_completions \
     WHERE completed_at > ?2 GROUP BY kind";

/// Folds the stats rows into one [`KindStats`] per kind.
fn fold_stats(rows: &[StatsRow]) -> Result<Vec<KindStats>, RepositoryError> {
    KindStats::from_counts(rows.iter().map(|row| {
        let oldest_due = row.oldest_due_us.map(micros);
        (
            row.kind.as_str(),
            row.state.as_str(),
            tally(row.count),
            oldest_due,
        )
    }))
    .map_err(RepositoryError::unexpected)
}

/// `now` minus `duration`, saturating.
fn before(now: Micros, duration: Duration) -> i64 {
    let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    now.get().saturating_sub(micros)
}

#[async_trait]
impl JobQueue for SqliteJobQueue {
    async fn claim(
        &self,
        kind: JobKind,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, RepositoryError> {
        let rows = self
            .pool
            .write(move |conn| {
                let now = Micros::now();
                sql_query(CLAIM)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(now.plus(lease))
                    .bind::<BigInt, _>(count(limit))
                    .bind::<Text, _>(kind.as_str())
                    .load::<ClaimedRow>(conn)
            })
            .await?
            .map_err(from_query)?;
        rows.into_iter()
            .map(|row| {
                let job = Job::new(
                    JobId::from(row.id.0),
                    self::kind(&row.kind)?,
                    row.subject_id.0,
                    attempt(row.attempts),
                );
                Ok(job.with_wait(micros(row.waited_us)))
            })
            .collect()
    }

    async fn renew(&self, jobs: &[Job], lease: Duration) -> Result<Vec<JobId>, RepositoryError> {
        let held: Vec<(SqlId, i32)> = jobs
            .iter()
            .map(|job| (SqlId(job.id.as_uuid()), fence(job)))
            .collect();
        let renewed = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let until = Micros::now().plus(lease);
                    let mut renewed = Vec::new();
                    for (id, attempt) in held {
                        let row = sql_query(
                            "UPDATE jobs SET locked_until = ? \
                             WHERE id = ? AND attempts = ? AND state = 'running' RETURNING id",
                        )
                        .bind::<BigInt, _>(until)
                        .bind::<Binary, _>(id)
                        .bind::<Integer, _>(attempt)
                        .get_result::<RenewedRow>(conn)
                        .optional()?;
                        renewed.extend(row.map(|row| JobId::from(row.id.0)));
                    }
                    QueryResult::Ok(renewed)
                })
            })
            .await?
            .map_err(from_query)?;
        Ok(renewed)
    }

    async fn complete(&self, job: &Job) -> Result<(), RepositoryError> {
        let (id, attempt) = (SqlId(job.id.as_uuid()), fence(job));
        self.pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    // Only if the job is still on this attempt: a worker whose lease ran out and
                    // was overtaken must not delete the newer attempt's claim (nor count a
                    // completion).
                    sql_query(
                        "INSERT INTO job_completions (kind, completed_at) \
                         SELECT kind, ?1 FROM jobs \
                         WHERE id = ?2 AND attempts = ?3 AND state = 'running'",
                    )
                    .bind::<BigInt, _>(Micros::now())
                    .bind::<Binary, _>(id)
                    .bind::<Integer, _>(attempt)
                    .execute(conn)?;
                    sql_query(
                        "DELETE FROM jobs WHERE id = ? AND attempts = ? AND state = 'running'",
                    )
                    .bind::<Binary, _>(id)
                    .bind::<Integer, _>(attempt)
                    .execute(conn)
                    .map(drop)
                })
            })
            .await?
            .map_err(from_query)
    }

    async fn fail(&self, job: &Job, error: &str, failure: Failure) -> Result<(), RepositoryError> {
        let (id, attempt, error) = (SqlId(job.id.as_uuid()), fence(job), error.to_owned());
        let (state, delay) = match failure {
            Failure::RetryIn(delay) => ("queued", delay),
            Failure::Dead => ("dead", Duration::ZERO),
        };
        self.pool
            .write(move |conn| {
                let now = Micros::now();
                sql_query(
                    "UPDATE jobs SET state = ?, last_error = ?, locked_until = NULL, \
                         updated_at = ?, run_at = ? \
                     WHERE id = ? AND attempts = ? AND state = 'running'",
                )
                .bind::<Text, _>(state)
                .bind::<Text, _>(error)
                .bind::<BigInt, _>(now)
                .bind::<BigInt, _>(now.plus(delay))
                .bind::<Binary, _>(id)
                .bind::<Integer, _>(attempt)
                .execute(conn)
                .map(drop)
            })
            .await?
            .map_err(from_query)
    }

    async fn release(&self, jobs: &[Job]) -> Result<(), RepositoryError> {
        let claims: Vec<(SqlId, i32)> = jobs
            .iter()
            .map(|job| (SqlId(job.id.as_uuid()), fence(job)))
            .collect();
        self.pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let now = Micros::now();
                    for (id, attempt) in claims {
                        // The attempt did not happen: it does not count. Only a job still on
                        // that attempt: a late release must not give back a newer claim.
                        sql_query(
                            "UPDATE jobs SET state = 'queued', locked_until = NULL, run_at = ?1, \
                                 attempts = max(attempts - 1, 0), updated_at = ?1 \
                             WHERE id = ?2 AND attempts = ?3 AND state = 'running'",
                        )
                        .bind::<BigInt, _>(now)
                        .bind::<Binary, _>(id)
                        .bind::<Integer, _>(attempt)
                        .execute(conn)?;
                    }
                    QueryResult::Ok(())
                })
            })
            .await?
            .map_err(from_query)
    }

    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, RepositoryError> {
        let rows = self
            .pool
            .run(move |conn| {
                sql_query(
                    "SELECT id, kind, subject_id, attempts, last_error, updated_at FROM jobs \
                     WHERE state = 'dead' ORDER BY updated_at DESC LIMIT ?",
                )
                .bind::<BigInt, _>(count(limit))
                .load::<DeadRow>(conn)
            })
            .await?
            .map_err(from_query)?;
        rows.into_iter()
            .map(|row| {
                Ok(DeadJob::new(
                    JobId::from(row.id.0),
                    kind(&row.kind)?,
                    row.subject_id.0,
                    attempt(row.attempts),
                    row.last_error.unwrap_or_default(),
                    row.updated_at.0,
                ))
            })
            .collect()
    }

    async fn retry_dead(&self, id: Option<JobId>) -> Result<u64, RepositoryError> {
        let id = id.map(|id| SqlId(id.as_uuid()));
        let retried = self
            .pool
            .write(move |conn| {
                sql_query(
                    "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?1, updated_at = ?1 \
                     WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)",
                )
                .bind::<BigInt, _>(Micros::now())
                .bind::<Nullable<Binary>, _>(id)
                .execute(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(retried as u64)
    }

    async fn stats(&self, window: Duration) -> Result<Vec<KindStats>, RepositoryError> {
        let rows = self
            .pool
            .run(move |conn| {
                let now = Micros::now();
                sql_query(STATS)
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(before(now, window))
                    .load::<StatsRow>(conn)
            })
            .await?
            .map_err(from_query)?;
        fold_stats(&rows)
    }

    async fn prune(&self, keep: Duration) -> Result<u64, RepositoryError> {
        let pruned = self
            .pool
            .write(move |conn| {
                sql_query("DELETE FROM job_completions WHERE completed_at < ?")
                    .bind::<BigInt, _>(before(Micros::now(), keep))
                    .execute(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(pruned as u64)
    }
}
