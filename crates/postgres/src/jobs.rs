//! [`JobQueue`] on PostgreSQL: the `jobs` table is the outbox that market writes fill in their
//! own transaction (see `PgMarketRepository`), and the queue workers claim from.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use markets_domain::RepositoryError;
use markets_domain::jobs::{DeadJob, Failure, Job, JobId, JobKind, JobQueue, KindStats, NewJob};
use std::time::Duration;
use uuid::Uuid;

use crate::error::from_query;
use crate::pool::PgPool;

/// Jobs in the `jobs` table.
#[derive(Debug, Clone)]
pub struct PgJobQueue {
    pool: PgPool,
}

impl PgJobQueue {
    /// A queue over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Inserts `jobs` on `conn`, inside the caller's transaction.
pub(crate) async fn enqueue(
    conn: &mut AsyncPgConnection,
    jobs: &[NewJob],
) -> Result<(), diesel::result::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|_| JobId::new().as_uuid()).collect();
    let kinds: Vec<&str> = jobs.iter().map(|job| job.kind.as_str()).collect();
    let subjects: Vec<Uuid> = jobs.iter().map(|job| job.subject).collect();
    sql_query(
        "INSERT INTO jobs (id, kind, subject_id) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[])",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(kinds)
    .bind::<Array<SqlUuid>, _>(subjects)
    .execute(conn)
    .await
    .map(drop)
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = SqlUuid)]
    subject_id: Uuid,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = BigInt)]
    waited_ms: i64,
}

#[derive(QueryableByName)]
struct RenewedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// One line of the stats: a kind's count in one state (or its completions), and for queued
/// jobs how long the oldest due one has waited.
#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest_due_ms: Option<i64>,
}

#[derive(QueryableByName)]
struct DeadRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = SqlUuid)]
    subject_id: Uuid,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

fn kind(raw: &str) -> Result<JobKind, RepositoryError> {
    raw.parse().map_err(RepositoryError::unexpected)
}

fn attempt(raw: i32) -> u32 {
    u32::try_from(raw).unwrap_or_default()
}

/// The attempt a write is fenced by.
fn fence(job: &Job) -> i32 {
    i32::try_from(job.attempt).unwrap_or(i32::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn since(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or_default())
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// A claim: the kind's expired leases first, then its due jobs, longest due first, each found
/// through its partial index and locked with `SKIP LOCKED` (two scans, so neither sorts the
/// other's rows). `run_at` becomes the moment the job was due (for a lease that ran out, when it
/// ran out), which is what the wait is measured from.
const CLAIM: &str = "WITH expired AS ( \
         SELECT id FROM jobs WHERE kind = $1 AND state = 'running' AND locked_until < now() \
         ORDER BY locked_until LIMIT $2 FOR UPDATE SKIP LOCKED), \
     due AS ( \
         SELECT id FROM jobs WHERE kind = $1 AND state = 'queued' AND run_at <= now() \
         ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
     UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = now(), \
         run_at = CASE WHEN state = 'running' THEN locked_until ELSE run_at END, \
         locked_until = now() + $3 * interval '1 millisecond' \
     WHERE id IN (SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) AS d \
                  LIMIT $2) \
     RETURNING id, kind, subject_id, attempts, \
         greatest(0, extract(epoch FROM now() - run_at) * 1000)::int8 AS waited_ms";

/// Every kind's jobs by state, with the oldest due wait of the queued ones, and the kind's
/// completions within the window ($1 ms).
const STATS: &str = "SELECT kind, state, count(*)::int8 AS count, \
         (extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())) * 1000)::int8 \
             AS oldest_due_ms \
     FROM jobs GROUP BY kind, state \
     UNION ALL \
     SELECT kind, 'completed', count(*)::int8, NULL FROM job_completions \
     WHERE completed_at > now() - $1 * interval '1 millisecond' GROUP BY kind";

/// Folds the stats rows into one [`KindStats`] per kind.
fn fold_stats(rows: &[StatsRow]) -> Result<Vec<KindStats>, RepositoryError> {
    KindStats::from_counts(rows.iter().map(|row| {
        let oldest_due = row.oldest_due_ms.map(since);
        (
            row.kind.as_str(),
            row.state.as_str(),
            count(row.count),
            oldest_due,
        )
    }))
    .map_err(RepositoryError::unexpected)
}

#[async_trait]
impl JobQueue for PgJobQueue {
    async fn claim(
        &self,
        kind: JobKind,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Job>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let rows = sql_query(CLAIM)
            .bind::<Text, _>(kind.as_str())
            .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind::<BigInt, _>(millis(lease))
            .load::<ClaimedRow>(&mut conn)
            .await
            .map_err(from_query)?;
        rows.into_iter()
            .map(|row| {
                let job = Job::new(
                    JobId::from(row.id),
                    self::kind(&row.kind)?,
                    row.subject_id,
                    attempt(row.attempts),
                );
                Ok(job.with_wait(since(row.waited_ms)))
            })
            .collect()
    }

    async fn renew(&self, jobs: &[Job], lease: Duration) -> Result<Vec<JobId>, RepositoryError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id.as_uuid()).collect();
        let attempts: Vec<i32> = jobs.iter().map(fence).collect();
        let rows = sql_query(
            "UPDATE jobs SET locked_until = now() + $3 * interval '1 millisecond' \
             FROM unnest($1::uuid[], $2::int[]) AS held(id, attempts) \
             WHERE jobs.id = held.id AND jobs.attempts = held.attempts \
                 AND jobs.state = 'running' \
             RETURNING jobs.id",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<Integer>, _>(attempts)
        .bind::<BigInt, _>(millis(lease))
        .load::<RenewedRow>(&mut conn)
        .await
        .map_err(from_query)?;
        Ok(rows.into_iter().map(|row| JobId::from(row.id)).collect())
    }

    async fn complete(&self, job: &Job) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        // Only if the job is still on this attempt: a worker whose lease ran out and was
        // overtaken must not delete the newer attempt's claim (nor count a completion).
        sql_query(
            "WITH done AS ( \
                 DELETE FROM jobs WHERE id = $1 AND attempts = $2 AND state = 'running' \
                 RETURNING kind) \
             INSERT INTO job_completions (kind) SELECT kind FROM done",
        )
        .bind::<SqlUuid, _>(job.id.as_uuid())
        .bind::<Integer, _>(fence(job))
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(from_query)
    }

    async fn fail(&self, job: &Job, error: &str, failure: Failure) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        let (state, delay) = match failure {
            Failure::RetryIn(delay) => ("queued", delay),
            Failure::Dead => ("dead", Duration::ZERO),
        };
        sql_query(
            "UPDATE jobs SET state = $3, last_error = $4, locked_until = NULL, updated_at = now(), \
                 run_at = now() + $5 * interval '1 millisecond' \
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind::<SqlUuid, _>(job.id.as_uuid())
        .bind::<Integer, _>(fence(job))
        .bind::<Text, _>(state)
        .bind::<Text, _>(error)
        .bind::<BigInt, _>(millis(delay))
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(from_query)
    }

    async fn release(&self, jobs: &[Job]) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id.as_uuid()).collect();
        let attempts: Vec<i32> = jobs.iter().map(fence).collect();
        // The attempt did not happen: it does not count. Only a job still on that attempt: a
        // release that comes late must not give back the claim of a worker that took over.
        sql_query(
            "UPDATE jobs SET state = 'queued', locked_until = NULL, run_at = now(), \
                 attempts = greatest(jobs.attempts - 1, 0), updated_at = now() \
             FROM unnest($1::uuid[], $2::int[]) AS released(id, attempts) \
             WHERE jobs.id = released.id AND jobs.attempts = released.attempts \
                 AND jobs.state = 'running'",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<Integer>, _>(attempts)
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(from_query)
    }

    async fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let rows = sql_query(
            "SELECT id, kind, subject_id, attempts, last_error, updated_at FROM jobs \
             WHERE state = 'dead' ORDER BY updated_at DESC LIMIT $1",
        )
        .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX))
        .load::<DeadRow>(&mut conn)
        .await
        .map_err(from_query)?;
        rows.into_iter()
            .map(|row| {
                Ok(DeadJob::new(
                    JobId::from(row.id),
                    kind(&row.kind)?,
                    row.subject_id,
                    attempt(row.attempts),
                    row.last_error.unwrap_or_default(),
                    row.updated_at,
                ))
            })
            .collect()
    }

    async fn retry_dead(&self, id: Option<JobId>) -> Result<u64, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let retried = sql_query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = now(), updated_at = now() \
             WHERE state = 'dead' AND ($1::uuid IS NULL OR id = $1)",
        )
        .bind::<Nullable<SqlUuid>, _>(id.map(|id| id.as_uuid()))
        .execute(&mut conn)
        .await
        .map_err(from_query)?;
        Ok(retried as u64)
    }

    async fn stats(&self, window: Duration) -> Result<Vec<KindStats>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let rows = sql_query(STATS)
            .bind::<BigInt, _>(millis(window))
            .load::<StatsRow>(&mut conn)
            .await
            .map_err(from_query)?;
        fold_stats(&rows)
    }

    async fn prune(&self, keep: Duration) -> Result<u64, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let pruned = sql_query(
            "DELETE FROM job_completions \
             WHERE completed_at < now() - $1 * interval '1 millisecond'",
        )
        .bind::<BigInt, _>(millis(keep))
        .execute(&mut conn)
        .await
        .map_err(from_query)?;
        Ok(pruned as u64)
    }
}
