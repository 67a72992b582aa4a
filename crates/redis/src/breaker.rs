//! A minimal circuit breaker: after a failure, skip Redis for a cool-down instead of paying a
//! command timeout on every request while it is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

    /// Whether a call may go to Redis now.
    pub(crate) fn allows(&self) -> bool {
        self.now() >= self.open_until.load(Ordering::Relaxed)
    }

    /// A call failed: skip Redis for the cool-down. True if the breaker was closed until now.
    pub(crate) fn trip(&self) -> bool {
        let cool_down = u64::try_from(self.cool_down.as_millis()).unwrap_or(u64::MAX);
        let until = self.now().saturating_add(cool_down);
        self.open_until.swap(until, Ordering::Relaxed) == 0
    }

    /// A call succeeded. True if the breaker was open until now.
    pub(crate) fn reset(&self) -> bool {
        self.open_until.swap(0, Ordering::Relaxed) != 0
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
        let instant = Breaker::new(Duration::ZERO);
        instant.trip();
        assert!(
            instant.allows(),
            "a zero cool-down lets the next call probe"
        );
    }
}
