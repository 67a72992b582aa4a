//! The connection pool: bounded, with timeouts everywhere (deadpool has none by default, so a
//! dead database would otherwise make requests wait forever).

use deadpool::{Runtime, Status};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{BuildError, Object, Pool};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use markets_domain::RepositoryError;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

use crate::error::{from_pool, from_query};

/// A pool of PostgreSQL connections. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct PgPool(Pool<AsyncPgConnection>);

impl PgPool {
    /// A connection, waiting at most the configured wait timeout; the database counts as
    /// unavailable if none comes.
    pub(crate) async fn get(&self) -> Result<Object<AsyncPgConnection>, RepositoryError> {
        self.0.get().await.map_err(from_pool)
    }

    /// Checks that a connection can be had and answers a trivial query.
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when the database cannot be reached in time.
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        let mut conn = self.get().await?;
        conn.batch_execute("SELECT 1").await.map_err(from_query)
    }

    /// Size, idle connections and waiters, for metrics.
    pub fn status(&self) -> Status {
        self.0.status()
    }

    /// Closes the pool: idle connections close now, busy ones when returned.
    pub fn close(&self) {
        self.0.close();
    }
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgPool").field(&self.0.status()).finish()
    }
}

/// How to reach the database and how many connections to keep.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `postgres://user:password@host:port/database`; secret because it may hold a password.
    pub url: SecretString,
    /// The most connections open at once.
    pub max_size: usize,
    /// How long a caller waits for a free connection before the database counts as unavailable.
    pub wait_timeout: Duration,
    /// How long opening (or health-checking) one connection may take.
    pub connect_timeout: Duration,
}

/// Builds the pool. Connections open lazily, so this succeeds even while the database is down.
///
/// # Errors
/// Only if the pool configuration itself is invalid.
pub fn build_pool(settings: &PoolSettings) -> Result<PgPool, BuildError> {
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new(settings.url.expose_secret());
    let pool = Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(PgPool(pool))
}
