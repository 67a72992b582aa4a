//! The in-memory fakes from `markets_domain::testing` keep the same contracts as real adapters,
//! so service tests built on them test something real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    AuditLogFixture, CacheFixture, JobQueueFixture, RepositoryFixture, TokenRevocationsFixture,
    audit_log_contract, cache_contract, job_queue_contract, repository_contract,
    token_revocations_contract,
};
use markets_domain::testing::{InMemoryCache, InMemoryRevocations, InMemoryStore};

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

impl JobQueueFixture for Fixture {
    type Queue = InMemoryStore;

    fn queue(&self) -> &InMemoryStore {
        &self.0
    }
}

/// The store's outbox is a queue too: what the application's worker tests run on.
mod job_queue {
    use super::*;

    job_queue_contract!(fixture());
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

struct RevocationsOnly(InMemoryRevocations);

impl TokenRevocationsFixture for RevocationsOnly {
    type Revocations = InMemoryRevocations;

    fn revocations(&self) -> &InMemoryRevocations {
        &self.0
    }
}

mod token_revocations {
    use super::*;

    async fn fixture() -> RevocationsOnly {
        RevocationsOnly(InMemoryRevocations::default())
    }

    token_revocations_contract!(fixture());
}
