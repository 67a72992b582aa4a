//! The in-memory fakes from `markets_domain::testing` keep the same contract as real adapters,
//! so service tests built on them test something real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{RepositoryFixture, repository_contract};
use markets_domain::testing::InMemoryStore;

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
