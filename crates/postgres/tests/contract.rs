//! The Postgres adapters pass the repository contract, each case on its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{RepositoryFixture, repository_contract};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{PgMarketRepository, PgUserRepository};

struct Fixture {
    markets: PgMarketRepository,
    users: PgUserRepository,
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

async fn fixture() -> Fixture {
    let database = TestDatabase::new().await;
    Fixture {
        markets: PgMarketRepository::new(database.pool()),
        users: PgUserRepository::new(database.pool()),
        _database: database,
    }
}

repository_contract!(fixture());
