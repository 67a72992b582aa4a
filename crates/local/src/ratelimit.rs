//! An in-process rate limiter: governor's keyed GCRA, one limiter per policy. It counts per
//! process only (several instances each allow the full budget), so it is the fallback and the
//! single-instance choice; the Redis limiter shares one budget across instances.

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Governor};
use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

type Keyed<C> = Governor<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

/// Rate limits in this process's memory. Keys stay in memory until [`sweep`](Self::sweep)
/// forgets those whose allowance is full again: run it on a timer to bound memory.
pub struct LocalRateLimiter<C: Clock = DefaultClock> {
    clock: C,
    limiters: Mutex<HashMap<RatePolicy, Arc<Keyed<C>>>>,
}

impl<C: Clock> std::fmt::Debug for LocalRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRateLimiter")
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl<C: Clock + Clone> LocalRateLimiter<C> {
    /// A limiter on `clock` (tests pass a fake one).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: Mutex::default(),
        }
    }
}

impl<C: Clock> LocalRateLimiter<C> {
    fn limiters(&self) -> MutexGuard<'_, HashMap<RatePolicy, Arc<Keyed<C>>>> {
        // Every critical section is one map operation: a panic cannot leave it half-done.
        self.limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets the keys whose allowance is full again (they would decide as a new key does).
    pub fn sweep(&self) {
        for limiter in self.limiters().values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many keys are held, across policies.
    pub fn keys(&self) -> usize {
        self.limiters().values().map(|limiter| limiter.len()).sum()
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> LocalRateLimiter<C> {
    fn limiter(&self, policy: &RatePolicy) -> Result<Arc<Keyed<C>>, RateLimitError> {
        let mut limiters = self.limiters();
        if let Some(limiter) = limiters.get(policy) {
            return Ok(limiter.clone());
        }
        let burst = NonZeroU32::new(policy.limit)
            .ok_or_else(|| RateLimitError("a policy must allow at least one request".into()))?;
        let quota = Quota::with_period(policy.emission_interval())
            .ok_or_else(|| RateLimitError("a policy needs a period".into()))?
            .allow_burst(burst);
        let limiter = Arc::new(
            Governor::dashmap_with_clock(quota, self.clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
        );
        limiters.insert(policy.clone(), limiter.clone());
        Ok(limiter)
    }

    /// Counts one request of `key` against `policy`.
    ///
    /// # Errors
    /// If the policy allows nothing or has no period.
    pub fn decide(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        let limiter = self.limiter(policy)?;
        let interval = policy.emission_interval();
        Ok(match limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                RateDecision::new(
                    true,
                    policy.limit,
                    remaining,
                    interval * policy.limit.saturating_sub(remaining),
                    std::time::Duration::ZERO,
                )
            }
            Err(refused) => RateDecision::new(
                false,
                policy.limit,
                0,
                policy.period,
                refused.wait_time_from(self.clock.now()),
            ),
        })
    }
}

#[async_trait]
impl<C: Clock + Clone + Send + Sync + 'static> RateLimiter for LocalRateLimiter<C>
where
    C::Instant: Send + Sync,
{
    async fn check(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.decide(policy, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    fn policy(limit: u32, period: Duration) -> RatePolicy {
        RatePolicy::new("test", limit, period)
    }

    #[test]
    fn exactly_the_limit_passes_then_waits_for_the_refill() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalRateLimiter::with_clock(clock.clone());
        let policy = policy(3, Duration::from_secs(60));
        let remaining: Vec<u32> = (0..3)
            .map(|_| limiter.decide(&policy, "ip").unwrap())
            .inspect(|decision| assert!(decision.allowed))
            .map(|decision| decision.remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.decide(&policy, "ip").unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert!(
            limiter.decide(&policy, "other ip").unwrap().allowed,
            "keys are separate"
        );
        clock.advance(Duration::from_secs(20));
        assert!(
            limiter.decide(&policy, "ip").unwrap().allowed,
            "one more after the refill"
        );
    }

    #[test]
    fn a_flood_of_distinct_keys_is_forgotten_once_their_allowance_refills() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalRateLimiter::with_clock(clock.clone());
        let policy = policy(10, Duration::from_secs(60));
        for n in 0..50_000 {
            limiter.decide(&policy, &format!("client {n}")).unwrap();
        }
        assert_eq!(limiter.keys(), 50_000);
        limiter.sweep();
        assert_eq!(limiter.keys(), 50_000, "still counting within the period");
        clock.advance(Duration::from_secs(60));
        limiter.sweep();
        assert_eq!(limiter.keys(), 0, "memory is bounded by recent clients");
    }
}
