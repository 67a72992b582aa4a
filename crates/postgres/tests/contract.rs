//! The Postgres adapters pass every store contract (repositories, vector index, job queue, audit
//! log, token revocations), each case on its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    AuditLogFixture, JobQueueFixture, RepositoryFixture, TokenRevocationsFixture,
    VectorIndexFixture, store_contract,
};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{
    PgAuditLog, PgJobQueue, PgMarketRepository, PgRevocations, PgUserRepository, PgVectorIndex,
};

struct Fixture {
    markets: PgMarketRepository,
    users: PgUserRepository,
    index: PgVectorIndex,
    queue: PgJobQueue,
    audit: PgAuditLog,
    revocations: PgRevocations,
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

impl JobQueueFixture for Fixture {
    type Queue = PgJobQueue;

    fn queue(&self) -> &PgJobQueue {
        &self.queue
    }
}

impl AuditLogFixture for Fixture {
    type Log = PgAuditLog;

    fn audit(&self) -> &PgAuditLog {
        &self.audit
    }
}

impl TokenRevocationsFixture for Fixture {
    type Revocations = PgRevocations;

    fn revocations(&self) -> &PgRevocations {
        &self.revocations
    }
}

async fn fixture() -> Fixture {
    let database = TestDatabase::new().await;
    Fixture {
        markets: PgMarketRepository::new(database.pool()),
        users: PgUserRepository::new(database.pool()),
        index: PgVectorIndex::new(database.pool()),
        queue: PgJobQueue::new(database.pool()),
        audit: PgAuditLog::new(database.pool()),
        revocations: PgRevocations::new(database.pool()),
        _database: database,
    }
}

store_contract!(fixture());
