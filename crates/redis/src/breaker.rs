//! A minimal circuit breaker: after a failure, skip Redis for a cool-down instead of paying a
//! command timeout on every request while it is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Debug)]
pub(crate) struct Breaker {
    epoch: Instant,
    cool_down: Duration,
    /// Milliseconds since `epoch` until which calls are skipped; 0 when closed.
    open_until: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(cool_down: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            cool_down,
            open_until: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A breaker for commands bounded by `timeout`: it stays open for a few timeouts (at least
    /// a second), long enough that an outage costs requests next to nothing.
    pub(crate) fn for_timeout(timeout: Duration) -> Self {
        Self::new(timeout.max(Duration::from_millis(250)) * 4)
    }

    /// Whether a call may go to Redis now: always while closed; once the cool-down is over,
    /// to one caller only (the probe), the others waiting out another cool-down.
    pub(crate) fn allows(&self) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.now();
        now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    now.saturating_add(self.cool_down_ms()),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn cool_down_ms(&self) -> u64 {
        u64::try_from(self.cool_down.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// A call failed: skip Redis for the cool-down. True if the breaker was closed until now.
    pub(crate) fn trip(&self) -> bool {
        let until = self.now().saturating_add(self.cool_down_ms());
        self.open_until.swap(until, Ordering::Relaxed) == 0
    }

    /// A call succeeded. True if the breaker was open until now.
    pub(crate) fn reset(&self) -> bool {
        self.open_until.swap(0, Ordering::Relaxed) != 0
    }

    /// Runs `command` unless the breaker is open (`None`: the caller falls back at once), and
    /// keeps the breaker's state, logging each change once with `purpose`: what falls back
    /// while Redis is down.
    pub(crate) async fn call<T>(
        &self,
        purpose: &'static str,
        command: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Option<Result<T, fred::error::Error>> {
        if !self.allows() {
            return None;
        }
        let outcome = command.await;
        match &outcome {
            Ok(_) if self.reset() => info!(purpose, "Redis is reachable again"),
            Err(error) if self.trip() => {
                warn!(%error, purpose, "Redis unavailable: falling back until it answers");
            }
            _ => {}
        }
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trip_skips_calls_until_the_cool_down_ends() {
        let breaker = Breaker::new(Duration::from_secs(3600));
        assert!(breaker.allows());
        assert!(breaker.trip(), "first trip reports the transition");
        assert!(!breaker.allows());
        assert!(!breaker.trip(), "second trip does not");
        assert!(breaker.reset());
        assert!(breaker.allows());
    }

    #[test]
    fn after_the_cool_down_one_caller_probes() {
        let breaker = Breaker::new(Duration::ZERO);
        breaker.trip();
        // The cool-down (at least a millisecond) must pass; spin on the clock alone.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2) {}
        assert!(breaker.allows(), "the probe");
        assert!(
            !breaker.allows(),
            "everyone else waits for the probe's outcome"
        );
    }

    #[tokio::test]
    async fn a_failed_call_opens_the_breaker_and_later_calls_are_not_made() {
        let breaker = Breaker::new(Duration::from_secs(3600));
        let failure = fred::error::Error::new(fred::error::ErrorKind::Timeout, "timed out");
        let outcome = breaker.call("test", async { Err::<(), _>(failure) }).await;
        assert!(matches!(outcome, Some(Err(_))));
        let skipped: Option<Result<(), _>> = breaker
            .call("test", async {
                unreachable!("an open breaker runs no command")
            })
            .await;
        assert!(skipped.is_none());
        breaker.reset();
        assert!(matches!(
            breaker
                .call("test", async { Ok::<_, fred::error::Error>(1) })
                .await,
            Some(Ok(1))
        ));
    }
}
