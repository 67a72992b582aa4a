//! The local adapters keep their ports' contracts: the hashing embedder the embedding provider
//! contract, the moka cache the cache contract, the in-process limiter the rate limiter
//! contract, and single flight (over the in-memory store) the repository contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    CacheFixture, EmbeddingFixture, RateLimiterFixture, RepositoryFixture, cache_contract,
    embedding_contract, rate_limiter_contract, repository_contract,
};
use markets_domain::testing::InMemoryStore;
use markets_local::{HashingEmbedder, LocalRateLimiter, MokaCache, SingleFlight};

struct Fixture(HashingEmbedder);

impl EmbeddingFixture for Fixture {
    type Provider = HashingEmbedder;

    fn provider(&self) -> &HashingEmbedder {
        &self.0
    }
}

async fn fixture() -> Fixture {
    Fixture(HashingEmbedder::default())
}

embedding_contract!(fixture());

struct CacheOnly(MokaCache);

impl CacheFixture for CacheOnly {
    type Cache = MokaCache;

    fn cache(&self) -> &MokaCache {
        &self.0
    }
}

mod cache {
    use super::*;

    async fn fixture() -> CacheOnly {
        CacheOnly(MokaCache::default())
    }

    cache_contract!(fixture());
}

struct LimiterOnly(LocalRateLimiter);

impl RateLimiterFixture for LimiterOnly {
    type Limiter = LocalRateLimiter;

    fn limiter(&self) -> &LocalRateLimiter {
        &self.0
    }
}

mod rate_limiter {
    use super::*;

    async fn fixture() -> LimiterOnly {
        LimiterOnly(LocalRateLimiter::default())
    }

    rate_limiter_contract!(fixture());
}

/// Markets read through single flight, users straight from the same store.
struct SharedReads {
    markets: SingleFlight<InMemoryStore>,
    users: InMemoryStore,
}

impl RepositoryFixture for SharedReads {
    type Markets = SingleFlight<InMemoryStore>;
    type Users = InMemoryStore;

    fn markets(&self) -> &SingleFlight<InMemoryStore> {
        &self.markets
    }

    fn users(&self) -> &InMemoryStore {
        &self.users
    }
}

mod repository {
    use super::*;

    async fn fixture() -> SharedReads {
        let store = InMemoryStore::new();
        SharedReads {
            markets: SingleFlight::new(store.clone()),
            users: store,
        }
    }

    repository_contract!(fixture());
}
