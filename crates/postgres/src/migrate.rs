//! Embedded schema migrations, run under an advisory lock so that instances starting together
//! never migrate at once.

use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

use markets_domain::error::BoxError;

/// The workspace's `migrations/postgres/` folder, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// An arbitrary, fixed key for `pg_advisory_lock`, shared by every instance of this service.
const MIGRATION_LOCK_KEY: i64 = 0x006d_6172_6b65_7473; // "markets" in ASCII

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database could not be reached.
    #[error("could not connect to the database to migrate it")]
    Connect(#[source] diesel::ConnectionError),
    /// A migration or the lock around them failed.
    #[error("running migrations failed")]
    Run(#[source] BoxError),
    /// The blocking task running the migrations died.
    #[error("the migration task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Applies every pending migration and returns the versions applied (empty if up to date).
///
/// Diesel's migration harness is synchronous, so it runs on a blocking thread over a
/// dedicated connection, not one borrowed from the pool.
///
/// # Errors
/// If the database cannot be reached or a migration fails (which rolls that migration back).
pub async fn run_migrations(url: &SecretString) -> Result<Vec<String>, MigrateError> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(url.expose_secret())
            .map_err(MigrateError::Connect)?;
        migrate_locked(&mut conn).map_err(MigrateError::Run)
    })
    .await?
}

fn migrate_locked(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
) -> Result<Vec<String>, BoxError> {
    advisory_lock(conn, "pg_advisory_lock")?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect());
    // The lock dies with the session anyway; releasing it early lets waiting instances go on.
    advisory_lock(conn, "pg_advisory_unlock")?;
    applied
}

fn advisory_lock(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
    function: &str,
) -> Result<(), BoxError> {
    diesel::sql_query(format!("SELECT {function}($1)"))
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(conn)?;
    Ok(())
}
