//! The in-memory fakes from `markets_domain::testing` keep the same contracts as real adapters,
//! so service tests built on them test something real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    AuditLogFixture, CacheFixture, RepositoryFixture, audit_log_contract, cache_contract,
    repository_contract,
};
use markets_domain::testing::{InMemoryCache, InMemoryStore};

struct Fixture(InMemoryStore);

impl RepositoryFixture for Fixture {
    type Markets = InMemoryStore;
    type Users = InMemoryStore;

    fn markets(&self) -> &InMemoryStore {
        &self.0
    }

    fn users(&self) -> &InMemoryStore {
        &self.0
    }
}

async fn fixture() -> Fixture {
    Fixture(InMemoryStore::new())
}

repository_contract!(fixture());

impl AuditLogFixture for Fixture {
    type Log = InMemoryStore;

    fn audit(&self) -> &InMemoryStore {
        &self.0
    }
}

mod audit_log {
    use super::*;

    audit_log_contract!(fixture());
}

struct CacheOnly(InMemoryCache);

impl CacheFixture for CacheOnly {
    type Cache = InMemoryCache;

    fn cache(&self) -> &InMemoryCache {
        &self.0
    }
}

mod cache {
    use super::*;

    async fn fixture() -> CacheOnly {
        CacheOnly(InMemoryCache::default())
    }

    cache_contract!(fixture());
}
