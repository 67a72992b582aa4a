//! Rate-limit decisions as every front end makes them: a refusal is counted in
//! `rate_limit_rejections_total` and logged, and a limiter that cannot decide (its store is down)
//! lets the request through rather than failing it.

use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use std::sync::Arc;
use tracing::{info, warn};

/// Decides requests against policies with one limiter (shared through Redis, or per instance).
#[derive(Debug, Clone)]
pub struct RateLimits {
    limiter: Arc<dyn RateLimiter>,
}

impl RateLimits {
    /// Decisions by `limiter`.
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        Self { limiter }
    }

    /// Counts `key` against `policy`; `None` when the limiter could not decide, in which case
    /// the request goes through.
    pub async fn decide(&self, policy: &RatePolicy, key: &str) -> Option<RateDecision> {
        Self::judged(policy, self.limiter.check(policy, key).await)
    }

    /// What [`decide`](Self::decide) would answer, counting nothing: for budgets that only
    /// some outcomes spend (see [`spend`](Self::spend)).
    pub async fn peek(&self, policy: &RatePolicy, key: &str) -> Option<RateDecision> {
        Self::judged(policy, self.limiter.peek(policy, key).await)
    }

    /// Counts `key` against `policy` for a request already answered (a failed login): there
    /// is nothing left to refuse, so no decision; a limiter that cannot count is logged.
    pub async fn spend(&self, policy: &RatePolicy, key: &str) {
        if let Err(error) = self.limiter.check(policy, key).await {
            warn!(%error, policy = %policy.name, "rate limiter failed; the request was not counted");
        }
    }

    fn judged(
        policy: &RatePolicy,
        decision: Result<RateDecision, RateLimitError>,
    ) -> Option<RateDecision> {
        match decision {
            Ok(decision) => {
                if !decision.allowed {
                    metrics::counter!("rate_limit_rejections_total", "policy" => policy.name.clone())
                        .increment(1);
                    info!(policy = %policy.name, "request refused by rate limit");
                }
                Some(decision)
            }
            Err(error) => {
                warn!(%error, policy = %policy.name, "rate limiter failed; letting the request through");
                None
            }
        }
    }
}
