//! Embedded schema migrations (`migrations/sqlite/`), applied in one `BEGIN IMMEDIATE`
//! transaction: SQLite's write lock plays the part of PostgreSQL's advisory lock, so processes
//! starting together never migrate at once (the second waits, then finds nothing to do).

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use markets_domain::RepositoryError;
use markets_domain::error::BoxError;

use crate::pool::SqlitePool;

/// The workspace's `migrations/sqlite/` folder, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// No connection could be had.
    #[error("could not get a connection to migrate the database")]
    Connect(#[from] RepositoryError),
    /// A migration failed (all of this run's migrations are rolled back).
    #[error("running migrations failed")]
    Run(#[source] BoxError),
}

impl SqlitePool {
    /// Applies every pending migration and returns the versions applied (empty if up to date).
    ///
    /// # Errors
    /// If no connection can be had or a migration fails.
    pub async fn migrate(&self) -> Result<Vec<String>, MigrateError> {
        self.write(|conn| {
            conn.immediate_transaction::<_, BoxError, _>(|conn| {
                let applied = conn.run_pending_migrations(MIGRATIONS)?;
                Ok(applied.iter().map(ToString::to_string).collect())
            })
        })
        .await?
        .map_err(MigrateError::Run)
    }
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;
    use crate::testing::TestDatabase;
    use diesel::migration::MigrationSource;
    use diesel::sqlite::Sqlite;

    fn count() -> usize {
        MigrationSource::<Sqlite>::migrations(&MIGRATIONS)
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn migrating_twice_applies_nothing_the_second_time() {
        let db = TestDatabase::unmigrated().await;
        let first = db.pool().migrate().await.unwrap();
        assert_eq!(first.len(), count());
        assert!(db.pool().migrate().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_migrations_apply_each_migration_once() {
        let db = TestDatabase::unmigrated().await;
        let other = crate::SqlitePool::connect(db.path().to_str().unwrap())
            .await
            .unwrap();
        let pool = db.pool();
        let (a, b) = tokio::join!(pool.migrate(), other.migrate());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), count(), "{a:?} {b:?}");
    }
}
