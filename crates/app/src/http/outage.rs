//! Which dependencies are in an outage, so that one that is down costs one error line (its
//! first failed request) rather than one per request: a 5 s database stop under load used to
//! log every one of its thousands of 503s at error. The middleware logs each 503 at warn, asks
//! [`Outages::failed`] whether it opens an outage (then also at error), and [`Outages::settle`]
//! closes the outages that went quiet (logged at info).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a service must go without failing a request before its outage counts as over, so
/// that its next failure opens (and logs at error) a new one. Two `Retry-After`s: clients
/// told to come back have had a chance to.
pub const QUIET_PERIOD: Duration =
    Duration::from_secs(2 * super::error::DEPENDENCY_RETRY_AFTER_SECS);

/// The outages in progress, by service name; one per server, shared by its workers.
#[derive(Debug)]
pub struct Outages {
    quiet: Duration,
    open: Mutex<HashMap<&'static str, Outage>>,
    /// Whether `open` may hold anything: spares the lock on every healthy request.
    any: AtomicBool,
}

/// One service's outage so far.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    last: Instant,
    failures: u64,
}

/// An outage that went quiet: the service failed no request for the quiet period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The service that recovered.
    pub service: &'static str,
    /// From its first failure to its last.
    pub lasted: Duration,
    /// How many requests it failed.
    pub failures: u64,
}

impl Outages {
    /// No outage yet; one ends after `quiet` without a failure.
    pub fn new(quiet: Duration) -> Self {
        Self {
            quiet,
            open: Mutex::new(HashMap::new()),
            any: AtomicBool::new(false),
        }
    }

    /// How long a service must fail nothing for its outage to end.
    pub fn quiet(&self) -> Duration {
        self.quiet
    }

    /// Records a request that `service` failed at `now`; `true` if it opens an outage (the
    /// service had not failed for the quiet period, or never).
    pub fn failed(&self, service: &'static str, now: Instant) -> bool {
        let mut open = self.lock();
        self.any.store(true, Ordering::Release);
        match open.get_mut(service) {
            Some(outage) if now.saturating_duration_since(outage.last) < self.quiet => {
                outage.last = outage.last.max(now);
                outage.failures += 1;
                false
            }
            _ => {
                let outage = Outage {
                    since: now,
                    last: now,
                    failures: 1,
                };
                open.insert(service, outage);
                true
            }
        }
    }

    /// Closes, and returns, the outages whose service has failed nothing for the quiet period
    /// by `now`. Cheap while none is open.
    pub fn settle(&self, now: Instant) -> Vec<Recovery> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut open = self.lock();
        let mut recovered = Vec::new();
        open.retain(|&service, outage| {
            let over = now.saturating_duration_since(outage.last) >= self.quiet;
            if over {
                recovered.push(Recovery {
                    service,
                    lasted: outage.last.saturating_duration_since(outage.since),
                    failures: outage.failures,
                });
            }
            !over
        });
        self.any.store(!open.is_empty(), Ordering::Release);
        recovered
    }

    /// The map; a panic elsewhere while holding it left counts, which are still usable.
    fn lock(&self) -> MutexGuard<'_, HashMap<&'static str, Outage>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(10);

    #[test]
    fn only_the_first_failure_of_an_outage_opens_it() {
        let outages = Outages::new(QUIET);
        let start = Instant::now();
        assert!(outages.failed("database", start));
        for n in 1..100 {
            let now = start + Duration::from_millis(50 * n);
            assert!(!outages.failed("database", now), "failure {n}");
        }
        assert!(
            outages.failed("cache", start),
            "each service has its own outage"
        );
    }

    #[test]
    fn an_outage_ends_after_the_quiet_period_and_the_next_failure_opens_another() {
        let outages = Outages::new(QUIET);
        let start = Instant::now();
        assert!(outages.settle(start).is_empty());
        outages.failed("database", start);
        outages.failed("database", start + Duration::from_secs(3));
        assert!(outages.settle(start + Duration::from_secs(12)).is_empty());
        let recovered = outages.settle(start + Duration::from_secs(13));
        assert_eq!(
            recovered,
            vec![Recovery {
                service: "database",
                lasted: Duration::from_secs(3),
                failures: 2,
            }]
        );
        assert!(outages.settle(start + Duration::from_secs(14)).is_empty());
        assert!(outages.failed("database", start + Duration::from_secs(14)));
    }

    #[test]
    fn a_failure_after_a_quiet_period_opens_a_new_outage_even_unsettled() {
        let outages = Outages::new(QUIET);
        let start = Instant::now();
        assert!(outages.failed("database", start));
        assert!(outages.failed("database", start + QUIET));
    }
}
