//! Read replicas: which server a read goes to.
//!
//! [`ReadRouting`] holds the primary's pool and one pool per streaming replica. Reads that may
//! be a moment old (lists, search, a cache miss) go to a replica that answered its last probe and
//! was then at most `max_lag` behind the primary, round robin; everything else, and every read
//! when no replica qualifies, goes to the primary. A read that fails on a replica is run again
//! on the primary, so a replica that dies between two probes costs a retry, not an error.
//!
//! Lag is measured in time, from write-ahead-log positions: each probe samples the primary's
//! `pg_current_wal_insert_lsn()`, then each replica's `pg_last_wal_replay_lsn()`. A replica that has
//! replayed the primary's position of some sample was at most `now - sample time` behind. Unlike
//! `now() - pg_last_xact_replay_timestamp()`, this does not call an idle primary's replicas
//! late, and it sees a replica that stopped receiving while the primary writes.

use diesel::dsl::sql;
use diesel::sql_types::{BigInt, Nullable};
use diesel_async::AsyncPgConnection;
use markets_domain::RepositoryError;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::from_query;
use crate::pool::PgPool;
use crate::task::Background;

/// The role of the server a pool reaches, as `db_queries_total` labels its checkouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The primary: every write, and the reads that must see the latest one.
    Primary,
    /// A streaming replica: reads that may be a moment old.
    Replica,
}

impl Role {
    /// `primary` or `replica`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// One replica and what its last probe found.
#[derive(Debug)]
struct Replica {
    name: String,
    pool: PgPool,
    /// Answered the last probe as a replica (in recovery).
    reachable: AtomicBool,
    /// Reachable and within the lag bound: reads may go here.
    usable: AtomicBool,
    /// Milliseconds behind the primary at the last probe; `u64::MAX` when unknown.
    lag_ms: AtomicU64,
}

impl Replica {
    fn mark_failed(&self) {
        self.reachable.store(false, Ordering::Relaxed);
        self.usable.store(false, Ordering::Relaxed);
    }
}

/// What readiness and metrics show of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// `host:port` (never the credentials of its URL).
    pub name: String,
    /// It answered its last probe as a replica.
    pub reachable: bool,
    /// Reads go to it: reachable and at most the lag bound behind.
    pub serving: bool,
    /// How far behind the primary it was at its last probe, when known.
    pub lag: Option<Duration>,
}

/// The primary's pool and its replicas' pools. Cheap to clone: clones share the pools and the
/// probe results.
#[derive(Debug, Clone)]
pub struct ReadRouting {
    primary: PgPool,
    replicas: Arc<[Replica]>,
    next: Arc<AtomicUsize>,
}

impl From<PgPool> for ReadRouting {
    /// Every read on the primary: no replicas.
    fn from(primary: PgPool) -> Self {
        Self::new(primary, Vec::new())
    }
}

impl ReadRouting {
    /// The primary and the replicas, each named (`host:port`) for readiness and metrics. No
    /// read goes to a replica before a probe ([`ReadRouting::probe`]) has found it caught up.
    pub fn new(primary: PgPool, replicas: Vec<(String, PgPool)>) -> Self {
        let replicas = replicas
            .into_iter()
            .map(|(name, pool)| Replica {
                name,
                pool: pool.for_role(Role::Replica),
                reachable: AtomicBool::new(false),
                usable: AtomicBool::new(false),
                lag_ms: AtomicU64::new(u64::MAX),
            })
            .collect();
        Self {
            primary,
            replicas,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The primary's pool.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Closes every pool: idle connections close now, busy ones when returned.
    pub fn close(&self) {
        self.primary.close();
        for replica in self.replicas.iter() {
            replica.pool.close();
        }
    }

    /// Whether any replica is configured.
    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// Each replica as its last probe found it, in configuration order.
    pub fn states(&self) -> Vec<ReplicaState> {
        self.replicas
            .iter()
            .map(|replica| {
                let lag_ms = replica.lag_ms.load(Ordering::Relaxed);
                ReplicaState {
                    name: replica.name.clone(),
                    reachable: replica.reachable.load(Ordering::Relaxed),
                    serving: replica.usable.load(Ordering::Relaxed),
                    lag: (lag_ms != u64::MAX).then(|| Duration::from_millis(lag_ms)),
                }
            })
            .collect()
    }

    /// The next usable replica, round robin.
    fn replica(&self) -> Option<&Replica> {
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|step| &self.replicas[(start + step) % count])
            .find(|replica| replica.usable.load(Ordering::Relaxed))
    }

    /// Runs the read `op` on a usable replica, or on the primary if there is none; after a
    /// failure on the replica, again on the primary. A replica whose connection failed serves no
    /// more reads until a probe finds it back.
    pub(crate) async fn read<T: Send, F>(&self, op: F) -> Result<T, RepositoryError>
    where
        F: for<'c> Read<'c, T, Future: Send> + Sync,
    {
        self.read_unless(op, |_: &T| false).await
    }

    /// [`ReadRouting::read`], also run again on the primary when `stale` says the primary may
    /// know better than the replica's answer (say, a market the replica has not seen created
    /// yet).
    pub(crate) async fn read_unless<T: Send, F>(
        &self,
        op: F,
        stale: impl Fn(&T) -> bool + Send,
    ) -> Result<T, RepositoryError>
    where
        F: for<'c> Read<'c, T, Future: Send> + Sync,
    {
        if let Some(replica) = self.replica() {
            match on(&replica.pool, &op).await {
                Ok(found) if !stale(&found) => return Ok(found),
                Ok(_) => {}
                Err(RepositoryError::Unavailable { .. }) => replica.mark_failed(),
                Err(_) => {}
            }
        }
        on(&self.primary, &op).await
    }

    /// Probes the primary and every replica once and updates what reads may use. `history`
    /// keeps the primary's recent positions between calls.
    pub async fn probe(&self, history: &mut PrimaryHistory) {
        let now = Instant::now();
        let primary = timeout(primary_position(&self.primary)).await;
        if let Some(position) = primary {
            history.record(now, position);
        }
        let probes = self.replicas.iter().map(|replica| async move {
            let replayed = timeout(replayed_position(&replica.pool)).await;
            (replica, replayed)
        });
        for (replica, replayed) in futures_util::future::join_all(probes).await {
            let Some(replayed) = replayed else {
                replica.mark_failed();
                continue;
            };
            replica.reachable.store(true, Ordering::Relaxed);
            // Without the primary's position (it is down) a replica keeps serving as it did:
            // reads stay up while writes cannot happen anyway.
            if primary.is_some() {
                let lag = history.lag(replayed, Instant::now());
                let lag_ms = lag.map_or(u64::MAX, |lag| {
                    u64::try_from(lag.as_millis()).unwrap_or(u64::MAX)
                });
                replica.lag_ms.store(lag_ms, Ordering::Relaxed);
                let within = lag.is_some_and(|lag| lag <= history.max_lag);
                replica.usable.store(within, Ordering::Relaxed);
            }
        }
    }

    /// Probes every [`PrimaryHistory::interval`], in a task of its own, until the handle is
    /// dropped. Without replicas there is nothing to probe and no task.
    pub fn spawn_probe(&self, max_lag: Duration) -> Option<Background> {
        let routing = self.clone();
        let probe = async move {
            let mut history = PrimaryHistory::new(max_lag);
            let mut ticks = tokio::time::interval(history.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                routing.probe(&mut history).await;
            }
        };
        self.has_replicas().then(|| Background::spawn(probe))
    }
}

/// A read of the store: an async function of a connection that [`ReadRouting`] may call twice
/// (on a replica, then on the primary). A trait of its own, rather than `AsyncFn`, so that its
/// bound can say the read's future is `Send` (as diesel-async's `transaction` does).
pub(crate) trait Read<'c, T>:
    Fn(&'c mut AsyncPgConnection) -> <Self as Read<'c, T>>::Future
{
    /// The future of one call.
    type Future: Future<Output = Result<T, RepositoryError>>;
}

impl<'c, T, F, Fut> Read<'c, T> for F
where
    F: Fn(&'c mut AsyncPgConnection) -> Fut,
    Fut: Future<Output = Result<T, RepositoryError>>,
{
    type Future = Fut;
}

/// `op` on a connection from `pool`.
async fn on<T, F>(pool: &PgPool, op: &F) -> Result<T, RepositoryError>
where
    F: for<'c> Read<'c, T, Future: Send> + Sync,
{
    let mut conn = pool.get().await?;
    op(&mut conn).await
}

/// The longest a probe of one server may take before that server counts as failed: long
/// enough not to drop a replica for a busy moment, and bounded, so a stalled server cannot
/// hold up the probes of the others.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `probe`'s value, or `None` if it failed or took longer than [`PROBE_TIMEOUT`].
async fn timeout<T>(probe: impl Future<Output = Result<T, RepositoryError>>) -> Option<T> {
    tokio::time::timeout(PROBE_TIMEOUT, probe).await.ok()?.ok()
}

/// The end of the primary's write-ahead log, in bytes: where its last record ends, committed
/// or not yet flushed (`pg_current_wal_insert_lsn()`: with `synchronous_commit = off` a commit
/// can return before the write position passes it, and a replica caught up with that position
/// would still lack the commit).
async fn primary_position(pool: &PgPool) -> Result<i64, RepositoryError> {
    // Imported here: in scope everywhere, its `load` would shadow the atomics'.
    use diesel_async::RunQueryDsl;
    let mut conn = pool.checkout().await?;
    let inserted = diesel::select(sql::<BigInt>(
        "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8",
    ))
    .get_result(&mut conn)
    .await
    .map_err(from_query)?;
    Ok(record_end(inserted))
}

/// The insert position names the first byte the next record may use: past the page header
/// when the last record ended on a page boundary. A replica that replayed that record ends
/// at the boundary, so the boundary is where the log ends. (PostgreSQL's default 8 kB pages
/// and 16 MB segments: a short header of 24 bytes, a long one of 40 bytes on a segment's
/// first page.)
fn record_end(inserted: i64) -> i64 {
    const PAGE: i64 = 8192;
    const SEGMENT: i64 = 16 * 1024 * 1024;
    let past_header = inserted % PAGE == 24 || inserted % SEGMENT == 40;
    if past_header {
        inserted - inserted % PAGE
    } else {
        inserted
    }
}

/// How far a replica has replayed the primary's log, in bytes; an error if the server is not
/// in recovery (a promoted or mistaken "replica" would serve reads from another history).
async fn replayed_position(pool: &PgPool) -> Result<i64, RepositoryError> {
    use diesel_async::RunQueryDsl;
    let mut conn = pool.checkout().await?;
    let replayed: Option<i64> = diesel::select(sql::<Nullable<BigInt>>(
        "(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8",
    ))
    .get_result(&mut conn)
    .await
    .map_err(from_query)?;
    replayed.ok_or_else(|| RepositoryError::unavailable("database replica", "not in recovery"))
}

/// The primary's recent log positions and when they were sampled: enough of them to tell
/// whether a replica is within the lag bound.
#[derive(Debug)]
pub struct PrimaryHistory {
    samples: VecDeque<(Instant, i64)>,
    max_lag: Duration,
    interval: Duration,
}

impl PrimaryHistory {
    /// A history for the bound `max_lag`. Probes run every quarter of it (so a replica is
    /// skipped at most a quarter late), but at least every second and at most every 50 ms.
    pub fn new(max_lag: Duration) -> Self {
        Self {
            samples: VecDeque::new(),
            max_lag,
            interval: (max_lag / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
        }
    }

    /// How often [`ReadRouting::spawn_probe`]'s task probes.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn record(&mut self, at: Instant, position: i64) {
        self.samples.push_back((at, position));
        // Older samples only ever say "more than the bound behind", which the oldest kept one
        // already says.
        let keep = self.max_lag + 2 * self.interval;
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(sampled, _)| at.duration_since(*sampled) > keep)
        {
            self.samples.pop_front();
        }
    }

    /// How far behind a replica that has replayed up to `replayed` is at most: since the newest
    /// sample it has caught up with. `None` if it is behind every sample kept.
    fn lag(&self, replayed: i64, now: Instant) -> Option<Duration> {
        self.samples
            .iter()
            .rev()
            .find(|(_, position)| *position <= replayed)
            .map(|(sampled, _)| now.saturating_duration_since(*sampled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_insert_position_just_past_a_page_header_ends_the_log_at_the_page_boundary() {
        assert_eq!(record_end(3 * 8192 + 24), 3 * 8192);
        assert_eq!(record_end(16 * 1024 * 1024 + 40), 16 * 1024 * 1024);
        assert_eq!(record_end(3 * 8192 + 100), 3 * 8192 + 100);
        assert_eq!(record_end(3 * 8192 + 40), 3 * 8192 + 40);
    }

    #[test]
    fn a_replica_is_as_late_as_the_newest_primary_position_it_has_replayed() {
        let mut history = PrimaryHistory::new(Duration::from_millis(400));
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        history.record(ms(0), 100);
        history.record(ms(100), 100);
        history.record(ms(200), 250);
        history.record(ms(300), 400);
        // Caught up with the last sample: only as late as that sample is old.
        assert_eq!(history.lag(400, ms(310)), Some(Duration::from_millis(10)));
        // Replayed 300: it has the primary's position at 200 ms, not at 300 ms.
        assert_eq!(history.lag(300, ms(310)), Some(Duration::from_millis(110)));
        // An idle primary: the same position sampled twice; the newer sample counts.
        assert_eq!(history.lag(100, ms(310)), Some(Duration::from_millis(210)));
        assert_eq!(history.lag(99, ms(310)), None);
    }

    #[test]
    fn samples_older_than_the_bound_are_dropped_but_never_the_last() {
        let mut history = PrimaryHistory::new(Duration::from_millis(400));
        let start = Instant::now();
        history.record(start, 1);
        history.record(start + Duration::from_secs(5), 2);
        assert_eq!(history.samples.len(), 1);
        assert_eq!(history.lag(1, start + Duration::from_secs(5)), None);
        assert!(history.lag(2, start + Duration::from_secs(6)).is_some());
        assert_eq!(history.interval(), Duration::from_millis(100));
    }
}
