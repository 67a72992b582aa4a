//! PostgreSQL adapters for the markets ports: the market and user repositories, the pgvector
//! index, the job queue (its `jobs` table is the outbox that market writes fill in their own
//! transaction; a [`JobListener`] wakes idle workers), the audit log, the token revocations, and
//! the change feed that keeps every instance's cache fences ([`PgChangeFeed`]).
//! diesel-async over a bounded deadpool pool, with the workspace's migrations embedded and run
//! under an advisory lock. The `testing` feature adds a freshly migrated database per test.
//!
//! ```no_run
//! # async fn wire(settings: markets_postgres::PoolSettings) -> Result<(), Box<dyn std::error::Error>> {
//! markets_postgres::run_migrations(&settings.url).await?;
//! let pool = markets_postgres::build_pool(&settings)?;
//! let markets = markets_postgres::PgMarketRepository::new(pool.clone());
//! let users = markets_postgres::PgUserRepository::new(pool);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod audit;
mod changes;
mod error;
mod fixed;
mod jobs;
mod markets;
mod migrate;
mod pool;
mod replicas;
mod revocations;
mod schema;
mod task;
#[cfg(feature = "testing")]
pub mod testing;
mod users;
mod vectors;
mod volume;
mod wakeups;

pub use audit::PgAuditLog;
pub use changes::{ChangeFeedSettings, PgChangeFeed};
pub use jobs::PgJobQueue;
pub use markets::PgMarketRepository;
pub use migrate::{MIGRATIONS, MigrateError, run_migrations};
pub use pool::{PgPool, PoolSettings, build_pool};
pub use replicas::{PrimaryHistory, ReadRouting, ReplicaState, Role};
pub use revocations::PgRevocations;
pub use task::Background;
pub use users::PgUserRepository;
pub use vectors::{PgVectorIndex, Vector};
pub use wakeups::{JobListener, PgJobWakeups};
