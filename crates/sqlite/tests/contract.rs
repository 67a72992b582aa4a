//! The SQLite adapters pass the repository, vector index and job queue and audit log contracts, each case on
//! its own database file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{
    AuditLogFixture, JobQueueFixture, RepositoryFixture, VectorIndexFixture, audit_log_contract,
    job_queue_contract, repository_contract, vector_index_contract,
};
use markets_sqlite::testing::TestDatabase;
use markets_sqlite::{
    SqliteAuditLog, SqliteJobQueue, SqliteMarketRepository, SqliteUserRepository, SqliteVectorIndex,
};

struct Fixture {
    markets: SqliteMarketRepository,
    users: SqliteUserRepository,
    index: SqliteVectorIndex,
    queue: SqliteJobQueue,
    audit: SqliteAuditLog,
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

async fn fixture() -> Fixture {
    let database = TestDatabase::new().await;
    Fixture {
        markets: SqliteMarketRepository::new(database.pool()),
        users: SqliteUserRepository::new(database.pool()),
        index: SqliteVectorIndex::new(database.pool()),
        queue: SqliteJobQueue::new(database.pool()),
        audit: SqliteAuditLog::new(database.pool()),
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
