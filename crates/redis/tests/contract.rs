//! The Redis adapters pass the cache and rate limiter contracts on a real Redis, each case under
//! its own key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use markets_contract_tests::{
    CacheFixture, RateLimiterFixture, cache_contract, rate_limiter_contract,
};
use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use markets_redis::testing::shared_settings;
use markets_redis::{RedisCache, RedisConnection, RedisRateLimiter};

struct Fixture(RedisCache);

impl CacheFixture for Fixture {
    type Cache = RedisCache;

    fn cache(&self) -> &RedisCache {
        &self.0
    }
}

async fn fixture() -> Fixture {
    let cache = RedisCache::connect(&shared_settings()).unwrap();
    cache
        .ping()
        .await
        .expect("Redis is up (scripts/services.sh up)");
    Fixture(cache)
}

cache_contract!(fixture());

/// A fallback that never decides, so a case can only pass on Redis's answers.
#[derive(Debug)]
struct NoFallback;

#[async_trait]
impl RateLimiter for NoFallback {
    async fn check(&self, _: &RatePolicy, _: &str) -> Result<RateDecision, RateLimitError> {
        Err(RateLimitError(
            "Redis did not answer: no fallback here".into(),
        ))
    }
}

struct Limiter(RedisRateLimiter<NoFallback>);

impl RateLimiterFixture for Limiter {
    type Limiter = RedisRateLimiter<NoFallback>;

    fn limiter(&self) -> &RedisRateLimiter<NoFallback> {
        &self.0
    }
}

mod rate_limiter {
    use super::*;

    async fn fixture() -> Limiter {
        let settings = shared_settings();
        let connection = RedisConnection::connect(&settings).unwrap();
        RedisCache::new(&connection, &settings)
            .ping()
            .await
            .expect("Redis is up (scripts/services.sh up)");
        Limiter(RedisRateLimiter::new(&connection, &settings, NoFallback))
    }

    rate_limiter_contract!(fixture());
}
