//! Rate limiting: named policies, the decision for one request, and the limiter port.

use async_trait::async_trait;
use std::time::Duration;

use crate::error::BoxError;

/// A limit: at most `limit` requests per `period` for one key, refilled continuously (GCRA),
/// with bursts of up to `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RatePolicy {
    /// The policy's name (`search`, `login`), part of every key it counts.
    pub name: String,
    /// Requests allowed per period.
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl RatePolicy {
    /// At most `limit` requests per `period`, counted under `name`.
    pub fn new(name: impl Into<String>, limit: u32, period: Duration) -> Self {
        Self {
            name: name.into(),
            limit,
            period,
        }
    }
}

impl RatePolicy {
    /// The time one request's allowance takes to come back.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.limit.max(1)
    }
}

/// The outcome of counting one request (or of a [`RateLimiter::peek`] at the next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateDecision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The policy's limit (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests left right now (`RateLimit-Remaining`): after this one when it was counted.
    pub remaining: u32,
    /// Until the allowance is full again (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// When refused, until the next request would be allowed (`Retry-After`).
    pub retry_after: Duration,
}

impl RateDecision {
    /// A decision: whether the request is `allowed`, with what the headers report.
    pub fn new(
        allowed: bool,
        limit: u32,
        remaining: u32,
        reset_after: Duration,
        retry_after: Duration,
    ) -> Self {
        Self {
            allowed,
            limit,
            remaining,
            reset_after,
            retry_after,
        }
    }
}

/// The limiter could not decide (e.g. its store is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("rate limiter is unavailable")]
pub struct RateLimitError(#[source] pub BoxError);

/// Counts requests per policy and key.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug + 'static {
    /// Counts one request of `key` against `policy` and says whether it may go on. A refused
    /// request is not counted.
    ///
    /// # Errors
    /// [`RateLimitError`] when the limiter cannot decide (its store is unreachable).
    async fn check(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError>;

    /// Says what [`check`](Self::check) would decide for `key` now, counting nothing:
    /// `allowed` as `check` would answer, `remaining` the requests left before this one (the
    /// whole limit, with no reset, for a key never counted). For budgets spent only by some
    /// outcomes, such as failed logins, judged before the outcome is known.
    ///
    /// # Errors
    /// [`RateLimitError`] when the limiter cannot decide (its store is unreachable).
    async fn peek(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError>;
}

forward_through_arc!(RateLimiter {
    async fn check(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError>;
    async fn peek(&self, policy: &RatePolicy, key: &str) -> Result<RateDecision, RateLimitError>;
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emission_interval_spreads_the_period_over_the_limit() {
        let policy = RatePolicy {
            name: "search".into(),
            limit: 60,
            period: Duration::from_secs(60),
        };
        assert_eq!(policy.emission_interval(), Duration::from_secs(1));
    }
}
