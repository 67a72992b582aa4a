//! SQLite adapters for the markets ports (markets, users, revocations, the job queue and an
//! in-process vector index): the embedded, zero-setup store. Diesel's SQLite backend runs on
//! pooled `diesel_async` `SyncConnectionWrapper` connections, with the schema in
//! `migrations/sqlite/` embedded.
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = markets_sqlite::SqlitePool::connect("sqlite:data/markets.db").await?;
//! pool.migrate().await?;
//! let markets = markets_sqlite::SqliteMarketRepository::new(pool.clone());
//! let users = markets_sqlite::SqliteUserRepository::new(pool.clone());
//! let index = markets_sqlite::SqliteVectorIndex::new(pool);
//! # Ok(()) }
//! ```
//!
//! Every operation runs whole on the connection's blocking thread (one hop per call, not one per
//! statement), so a transaction never spans an `.await`: a caller that gives up half-way cannot
//! leave a transaction open on a pooled connection.
#![deny(missing_docs)]

mod audit;
mod error;
mod jobs;
mod markets;
mod migrate;
mod pool;
mod revocations;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod users;
mod values;
mod vectors;

pub use audit::SqliteAuditLog;
pub use jobs::SqliteJobQueue;
pub use markets::SqliteMarketRepository;
pub use migrate::{MIGRATIONS, MigrateError};
pub use pool::{ConnectError, SqlitePool, SqliteSettings};
pub use revocations::SqliteRevocations;
pub use users::SqliteUserRepository;
pub use vectors::SqliteVectorIndex;
