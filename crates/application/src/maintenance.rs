//! Housekeeping loops that a serving process runs beside its requests.

use chrono::Utc;
use markets_domain::audit::AuditLog;
use markets_domain::error::report;
use markets_domain::market::MarketRepository;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::security::SecurityEvents;

/// How often the audit trail is purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// How often the refusals held in process reach the trail: a flood costs each client's key at
/// most one write per period beside its first, and the trail's counts lag by at most this.
pub const TALLY_FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Flushes the refusals that `events` holds every [`TALLY_FLUSH_EVERY`], the first time after one
/// period, until `stop` turns true (or its sender is dropped); then flushes once more, so that
/// what was counted before shutdown is stored. Send `stop` once requests have finished and await
/// the task.
pub fn flush_tallies(events: SecurityEvents, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now() + TALLY_FLUSH_EVERY;
        let mut ticks = tokio::time::interval_at(start, TALLY_FLUSH_EVERY);
        while !*stop.borrow_and_update() {
            tokio::select! {
                _ = ticks.tick() => events.flush().await,
                changed = stop.changed() => if changed.is_err() { break },
            }
        }
        events.flush().await;
    })
}

/// Deletes audit events older than `retention_days`, at once and then hourly; never when it is
/// 0 (keep everything), in which case the task ends at once.
pub fn purge_audit_trail(trail: Arc<dyn AuditLog>, retention_days: u32) -> JoinHandle<()> {
    tokio::spawn(async move {
        if retention_days == 0 {
            return;
        }
        let mut hourly = tokio::time::interval(PURGE_EVERY);
        loop {
            hourly.tick().await;
            let cutoff = Utc::now() - chrono::Duration::days(retention_days.into());
            match trail.purge_older_than(cutoff).await {
                Ok(0) => {}
                Ok(purged) => info!(purged, retention_days, "audit trail purged"),
                Err(error) => {
                    warn!(error = %report(&error), "purging the audit trail failed; will retry")
                }
            }
        }
    })
}

/// Forgets the idempotency keys of market creates once they expire: hourly, the first time at
/// once.
pub fn purge_idempotency_keys(markets: Arc<dyn MarketRepository>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(PURGE_EVERY);
        loop {
            hourly.tick().await;
            match markets.purge_expired_keys().await {
                Ok(0) => {}
                Ok(purged) => info!(purged, "expired idempotency keys purged"),
                Err(error) => {
                    warn!(error = %report(&error), "purging idempotency keys failed; will retry")
                }
            }
        }
    })
}

/// Runs `task` every `period`, the first time after one period: e.g. forgetting idle
/// rate-limit keys every minute, so a flood of distinct clients cannot grow an in-process
/// limiter without bound.
pub fn every(period: Duration, task: impl Fn() + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            ticks.tick().await;
            task();
        }
    })
}
