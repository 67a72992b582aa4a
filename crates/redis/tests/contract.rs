//! The Redis adapter passes the cache contract on a real Redis, each case under its own prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{CacheFixture, cache_contract};
use markets_redis::RedisCache;
use markets_redis::testing::shared_settings;

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
