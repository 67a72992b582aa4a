//! The Postgres adapters pass the repository, vector index and job queue and audit log contracts, each case on
//! its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    AuditLogFixture, JobQueueFixture, RepositoryFixture, VectorIndexFixture, audit_log_contract,
    job_queue_contract, repository_contract, vector_index_contract,
};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{
    PgAuditLog, PgJobQueue, PgMarketRepository, PgUserRepository, PgVectorIndex,
};

struct Fixture {
    markets: PgMarketRepository,
    users: PgUserRepository,
    index: PgVectorIndex,
    queue: PgJobQueue,
    audit: PgAuditLog,
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

async fn fixture() -> Fixture {
    let database = TestDatabase::new().await;
    Fixture {
        markets: PgMarketRepository::new(database.pool()),
        users: PgUserRepository::new(database.pool()),
        index: PgVectorIndex::new(database.pool()),
        queue: PgJobQueue::new(database.pool()),
        audit: PgAuditLog::new(database.pool()),
        _database: database,
    }
}

repository_contract!(fixture());

mod vector_index {
    use super::*;

    vector_index_contract!(fixture());
}

mod job_queue {
    use super::*;

    job_queue_contract!(fixture());
}

mod audit_log {
    use super::*;

    audit_log_contract!(fixture());
}
