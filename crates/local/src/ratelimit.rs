//! An in-process rate limiter: governor's keyed GCRA, one limiter per policy. It counts per
//! process only (several instances each allow the full budget), so it is the fallback and the
//! single-instance choice; the Redis limiter shares one budget across instances.
//!
//! governor's limiter has no check that counts nothing, so peeks go through its state store:
//! [`Store`] is governor's own keyed store that, for a key marked as a peek, runs governor's
//! GCRA on the key's current state and keeps nothing. The arithmetic stays governor's.

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter as Governor};
use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};

type Keyed<C> = Governor<Probe, Store, C, StateInformationMiddleware>;

/// A key as the limiter sees it: whose allowance, and whether the decision counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe {
    key: String,
    counts: bool,
}

/// governor's keyed state, by key, with peeks: see the module's documentation.
#[derive(Debug, Default)]
struct Store(DashMapStateStore<String>);

impl StateStore for Store {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe, decide: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if probe.counts {
            return self.0.measure_and_replace(&probe.key, decide);
        }
        // Read the state by refusing to replace it; a key never counted is not added.
        let current = self.0.get(&probe.key).and_then(|state| {
            state
                .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
                .err()
                .flatten()
        });
        decide(current).map(|(outcome, _)| outcome)
    }
}

impl ShrinkableKeyedStateStore<Probe> for Store {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.0);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.0)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.0)
    }
}

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
        let limiter = Arc::new(Keyed::new(quota, Store::default(), self.clock.clone()));
        limiters.insert(policy.clone(), limiter.clone());
        Ok(limiter)
    }

    /// Counts one request of `key` against `policy`.
    ///
    /// # Errors
    /// If the policy allows nothing or has no period.
    pub fn decide(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.judge(policy, key, true)
    }

    /// What [`decide`](Self::decide) would answer now, counting nothing.
    ///
    /// # Errors
    /// If the policy allows nothing or has no period.
    pub fn peek(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.judge(policy, key, false)
    }

    fn judge(
        &self,
        policy: &RatePolicy,
        key: &str,
        counts: bool,
    ) -> Result<RateDecision, RateLimitError> {
        let limiter = self.limiter(policy)?;
        let interval = policy.emission_interval();
        let probe = Probe {
            key: key.to_owned(),
            counts,
        };
        Ok(match limiter.check_key(&probe) {
            Ok(snapshot) => {
                // governor reports what is left after the request; a peek made none.
                let remaining = snapshot.remaining_burst_capacity() + u32::from(!counts);
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

    async fn peek(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        LocalRateLimiter::peek(self, policy, key)
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

    #[test]
    fn peeks_keep_no_key_and_see_the_refill() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalRateLimiter::with_clock(clock.clone());
        let policy = policy(2, Duration::from_secs(60));
        for n in 0..1_000 {
            assert!(
                limiter
                    .peek(&policy, &format!("client {n}"))
                    .unwrap()
                    .allowed
            );
        }
        assert_eq!(limiter.keys(), 0, "a peek at an unknown key stored it");
        limiter.decide(&policy, "ip").unwrap();
        limiter.decide(&policy, "ip").unwrap();
        let refused = limiter.peek(&policy, "ip").unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        clock.advance(Duration::from_secs(30));
        let refilled = limiter.peek(&policy, "ip").unwrap();
        assert_eq!((refilled.allowed, refilled.remaining), (true, 1));
    }
}
