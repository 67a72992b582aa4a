//! The Postgres adapters pass the repository and vector index contracts, each case on its own
//! database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    RepositoryFixture, VectorIndexFixture, repository_contract, vector_index_contract,
};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{PgMarketRepository, PgUserRepository, PgVectorIndex};

struct Fixture {
    markets: PgMarketRepository,
    users: PgUserRepository,
    index: PgVectorIndex,
    _database: TestDatabase,
}

impl RepositoryFixture for Fixture {
    type Markets = PgMarketRepository;
    type Users = PgUserRepository;

    fn markets(&self) -> &PgMarketRepository {
        &self.markets
    }

    fn users(&self) -> &PgUserRepository {
        &self.users
    }
}

impl VectorIndexFixture for Fixture {
    type Index = PgVectorIndex;

    fn index(&self) -> &PgVectorIndex {
        &self.index
    }
}

async fn fixture() -> Fixture {
    let database = TestDatabase::new().await;
    Fixture {
        markets: PgMarketRepository::new(database.pool()),
        users: PgUserRepository::new(database.pool()),
        index: PgVectorIndex::new(database.pool()),
        _database: database,
    }
}

repository_contract!(fixture());

mod vector_index {
    use super::*;

    vector_index_contract!(fixture());
}
