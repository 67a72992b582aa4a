//! The Redis adapters pass the cache, rate limiter and token revocations contracts on a real
//! Redis, each case under its own key prefix: on the shared server, and on a Redis Cluster of
//! this test process's own (three masters, three replicas; see `mod cluster`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use async_trait::async_trait;
use markets_contract_tests::{
    CacheFixture, RateLimiterFixture, TokenRevocationsFixture, cache_contract,
    rate_limiter_contract, token_revocations_contract,
};
use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use markets_redis::testing::shared_settings;
use markets_redis::{
    RedisCache, RedisConnection, RedisRateLimiter, RedisRevocations, RedisSettings,
};
use support::RecordOnly;

struct Fixture(RedisCache);

impl CacheFixture for Fixture {
    type Cache = RedisCache;

    fn cache(&self) -> &RedisCache {
        &self.0
    }
}

/// The three suites, each fixture built on the `connected()` where this is expanded: the
/// shared server's at the top, the cluster's in `mod cluster`.
macro_rules! redis_suites {
    () => {
        mod cache {
            use super::*;

            async fn fixture() -> Fixture {
                let (connection, settings) = connected().await;
                Fixture(RedisCache::new(&connection, &settings))
            }

            cache_contract!(fixture());
        }

        mod rate_limiter {
            use super::*;

            async fn fixture() -> Limiter {
                let (connection, settings) = connected().await;
                Limiter(RedisRateLimiter::new(&connection, &settings, NoFallback))
            }

            rate_limiter_contract!(fixture());
        }

        mod token_revocations {
            use super::*;

            async fn fixture() -> Revocations {
                let (connection, settings) = connected().await;
                let durable = RecordOnly::default();
                Revocations(RedisRevocations::new(&connection, &settings, durable))
            }

            token_revocations_contract!(fixture());
        }
    };
}

redis_suites!();

/// A connection to the shared test Redis, once it answers, with settings of a key prefix of
/// its own.
async fn connected() -> (RedisConnection, RedisSettings) {
    let settings = shared_settings();
    let connection = RedisConnection::connect(&settings).unwrap();
    RedisCache::new(&connection, &settings)
        .ping()
        .await
        .expect("Redis is up (scripts/services.sh up)");
    (connection, settings)
}

/// A fallback that never decides, so a case can only pass on Redis's answers.
#[derive(Debug)]
struct NoFallback;

impl NoFallback {
    fn refuse() -> Result<RateDecision, RateLimitError> {
        Err(RateLimitError(
            "Redis did not answer: no fallback here".into(),
        ))
    }
}

#[async_trait]
impl RateLimiter for NoFallback {
    async fn check(&self, _: &RatePolicy, _: &str) -> Result<RateDecision, RateLimitError> {
        Self::refuse()
    }

    async fn peek(&self, _: &RatePolicy, _: &str) -> Result<RateDecision, RateLimitError> {
        Self::refuse()
    }
}

struct Limiter(RedisRateLimiter<NoFallback>);

impl RateLimiterFixture for Limiter {
    type Limiter = RedisRateLimiter<NoFallback>;

    fn limiter(&self) -> &RedisRateLimiter<NoFallback> {
        &self.0
    }
}

struct Revocations(RedisRevocations<RecordOnly>);

impl TokenRevocationsFixture for Revocations {
    type Revocations = RedisRevocations<RecordOnly>;

    fn revocations(&self) -> &RedisRevocations<RecordOnly> {
        &self.0
    }
}

/// The same suites on a Redis Cluster: one private cluster for the whole test process.
mod cluster {
    use super::*;
    use markets_redis::testing::PrivateCluster;
    use std::time::Duration;

    /// A connection to the cluster once it answers, with settings of a key prefix of its own.
    async fn connected() -> (RedisConnection, RedisSettings) {
        let mut settings = PrivateCluster::shared().settings();
        // Every case's command must answer, on a busy machine too: the shared cluster's
        // client gets more time than the service's default.
        settings.command_timeout = Duration::from_secs(1);
        let connection = RedisConnection::connect(&settings).unwrap();
        assert!(connection.is_clustered());
        let cache = RedisCache::new(&connection, &settings);
        for _ in 0..50 {
            if cache.ping().await.is_ok() {
                return (connection, settings);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the private Redis Cluster does not answer");
    }

    redis_suites!();
}
