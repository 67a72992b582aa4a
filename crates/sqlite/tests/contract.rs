//! The SQLite adapters pass every store contract (repositories, vector index, job queue, audit
//! log, token revocations), each case on its own database file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    AuditLogFixture, JobQueueFixture, RepositoryFixture, TokenRevocationsFixture,
    VectorIndexFixture, store_contract,
};
use markets_sqlite::testing::TestDatabase;
use markets_sqlite::{
    SqliteAuditLog, SqliteJobQueue, SqliteMarketRepository, SqliteRevocations,
    SqliteUserRepository, SqliteVectorIndex,
};

struct Fixture {
    markets: SqliteMarketRepository,
    users: SqliteUserRepository,
    index: SqliteVectorIndex,
    queue: SqliteJobQueue,
    audit: SqliteAuditLog,
    revocations: SqliteRevocations,
    _database: TestDatabase,
}

impl RepositoryFixture for Fixture {
    type Markets = SqliteMarketRepository;
    type Users = SqliteUserRepository;

    fn markets(&self) -> &SqliteMarketRepository {
        &self.markets
    }

    fn users(&self) -> &SqliteUserRepository {
        &self.users
    }
}

impl VectorIndexFixture for Fixture {
    type Index = SqliteVectorIndex;

    fn index(&self) -> &SqliteVectorIndex {
        &self.index
    }
}

impl JobQueueFixture for Fixture {
    type Queue = SqliteJobQueue;

    fn queue(&self) -> &SqliteJobQueue {
        &self.queue
    }
}

impl AuditLogFixture for Fixture {
    type Log = SqliteAuditLog;

    fn audit(&self) -> &SqliteAuditLog {
        &self.audit
    }
}

impl TokenRevocationsFixture for Fixture {
    type Revocations = SqliteRevocations;

    fn revocations(&self) -> &SqliteRevocations {
        &self.revocations
    }
}

async fn fixture() -> Fixture {
    let database = TestDatabase::new().await;
    Fixture {
        markets: SqliteMarketRepository::new(database.pool()),
        users: SqliteUserRepository::new(database.pool()),
        index: SqliteVectorIndex::new(database.pool()),
        queue: SqliteJobQueue::new(database.pool()),
        audit: SqliteAuditLog::new(database.pool()),
        revocations: SqliteRevocations::new(database.pool()),
        _database: database,
    }
}

store_contract!(fixture());
