//! A rate limiter that never refills: each key gets its policy's `limit` requests, then none.
//! Time plays no part, so a test states exactly how many requests go through. A peek counts
//! nothing.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};

/// Counts requests per policy and key against the policy's limit, for good; it can be told to
/// fail, as a limiter whose store is down does. Clones share their counts.
#[derive(Debug, Clone, Default)]
pub struct BudgetLimiter {
    spent: Arc<Mutex<HashMap<(String, String), u32>>>,
    down: Arc<Mutex<bool>>,
}

impl BudgetLimiter {
    /// How many requests `key` has made under `policy`, refused ones included (peeks are none).
    pub fn spent(&self, policy: &str, key: &str) -> u32 {
        let spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        spent
            .get(&(policy.to_owned(), key.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// From now on every check and peek fails (`true`) or counts again (`false`).
    pub fn set_down(&self, down: bool) {
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }

    fn fail_if_down(&self) -> Result<(), RateLimitError> {
        if *self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(RateLimitError("limiter down".into()));
        }
        Ok(())
    }

    /// The decision for a key once `count` requests have been made: nothing ever comes back,
    /// so a key that made any waits the whole period.
    fn decision(policy: &RatePolicy, count: u32, allowed: bool) -> RateDecision {
        let wait = |waits: bool| if waits { policy.period } else { Duration::ZERO };
        RateDecision::new(
            allowed,
            policy.limit,
            policy.limit.saturating_sub(count),
            wait(count > 0),
            wait(!allowed),
        )
    }
}

#[async_trait]
impl RateLimiter for BudgetLimiter {
    async fn check(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.fail_if_down()?;
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let count = spent
            .entry((policy.name.clone(), key.to_owned()))
            .or_default();
        *count += 1;
        Ok(Self::decision(policy, *count, *count <= policy.limit))
    }

    async fn peek(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError> {
        self.fail_if_down()?;
        let count = self.spent(&policy.name, key);
        Ok(Self::decision(policy, count, count < policy.limit))
    }
}
