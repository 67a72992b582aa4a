//! The connection pool: bounded, with timeouts everywhere (deadpool has none by default, so a
//! dead database would otherwise make requests wait forever).

use deadpool::{Runtime, Status};
use diesel_async::pooled_connection::deadpool::{BuildError, Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use markets_domain::RepositoryError;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

use crate::error::{from_pool, from_query};
use crate::replicas::Role;

/// A pool of PostgreSQL connections to one server. Cheap to clone: clones share the
/// connections.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool<AsyncPgConnection>,
    role: Role,
}

impl PgPool {
    /// A connection for a repository operation (one statement, or a few in one transaction),
    /// counted in `db_queries_total` by the server's role.
    pub(crate) async fn get(&self) -> Result<Object<AsyncPgConnection>, RepositoryError> {
        metrics::counter!("db_queries_total", "role" => self.role.as_str()).increment(1);
        self.checkout().await
    }

    /// A connection, waiting at most the configured wait timeout; the database counts as
    /// unavailable if none comes. Not counted: for health checks and probes, which would
    /// otherwise drown the queries the service's users cause.
    pub(crate) async fn checkout(&self) -> Result<Object<AsyncPgConnection>, RepositoryError> {
        self.pool.get().await.map_err(from_pool)
    }

    /// The same pool, counted as reaching a server of `role`.
    pub(crate) fn for_role(self, role: Role) -> Self {
        Self { role, ..self }
    }

    /// Checks that a connection can be had and answers a trivial query.
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when the database cannot be reached in time.
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        let mut conn = self.checkout().await?;
        conn.batch_execute("SELECT 1").await.map_err(from_query)
    }

    /// Size, idle connections and waiters, for metrics.
    pub fn status(&self) -> Status {
        self.pool.status()
    }

    /// Closes the pool: idle connections close now, busy ones when returned.
    pub fn close(&self) {
        self.pool.close();
    }
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPool")
            .field("role", &self.role)
            .field("status", &self.pool.status())
            .finish()
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
    // `Fast` recycling sends no test query: a round trip saved on every checkout. The checkout
    // still discards what diesel-async counts as broken: a connection left inside a transaction
    // or with a failed transaction manager, and one whose client is closed. Each connection's
    // background task reads its socket all the time, so a session the server ended while idle
    // (a restart, `pg_terminate_backend`) is found closed and replaced before anyone uses it.
    // Only a connection that dies while checked out fails a query (mapped to "database
    // unavailable"), and it is replaced at its next checkout.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose_secret(),
        config,
    );
    let pool = Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(PgPool {
        pool,
        role: Role::Primary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PgUserRepository;
    use crate::schema::users;
    use crate::testing::{TestDatabase, backend_pid};
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    use markets_domain::user::{UserId, UserRepository};
    use tokio::sync::oneshot;

    fn tiny(settings: &PoolSettings) -> PgPool {
        let settings = PoolSettings {
            max_size: 1,
            wait_timeout: Duration::from_millis(200),
            ..settings.clone()
        };
        build_pool(&settings).unwrap()
    }

    fn insert_user(id: uuid::Uuid) -> impl diesel_async::methods::ExecuteDsl<AsyncPgConnection> {
        diesel::insert_into(users::table).values((
            users::id.eq(id),
            users::email.eq(format!("{}@example.com", id.simple())),
            users::display_name.eq("Mid-way"),
            users::password_hash.eq("x"),
        ))
    }

    #[tokio::test]
    async fn a_transaction_dropped_midway_does_not_poison_the_pool() {
        let db = TestDatabase::new().await;
        let pool = tiny(db.settings());
        let (inserted_tx, inserted) = oneshot::channel();
        let mut conn = pool.get().await.unwrap();
        let task = tokio::spawn(async move {
            conn.transaction::<(), diesel::result::Error, _>(async |conn| {
                insert_user(uuid::Uuid::new_v4()).execute(conn).await?;
                let _ = inserted_tx.send(());
                diesel::sql_query("SELECT pg_sleep(30)")
                    .execute(conn)
                    .await?;
                Ok(())
            })
            .await
        });
        inserted.await.unwrap();
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());

        // The only connection slot is usable again, on a clean connection: the half-done
        // transaction was rolled back, not left open for the next user.
        let mut conn = pool.get().await.unwrap();
        // Inside the old transaction (which wrote a row) a transaction id would be assigned.
        let in_transaction: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "txid_current_if_assigned() IS NOT NULL",
        ))
        .get_result(&mut conn)
        .await
        .unwrap();
        assert!(!in_transaction, "connection came back inside a transaction");
        let users: i64 = users::table.count().get_result(&mut conn).await.unwrap();
        assert_eq!(users, 0, "the cancelled insert was committed");
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            insert_user(uuid::Uuid::new_v4()).execute(conn).await
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_exhausted_pool_reports_the_database_unavailable() {
        let db = TestDatabase::new().await;
        let pool = tiny(db.settings());
        let _held = pool.get().await.unwrap();
        let users = PgUserRepository::new(pool.clone());
        let error = users.find_by_id(UserId::new()).await.unwrap_err();
        assert!(
            matches!(
                error,
                RepositoryError::Unavailable {
                    service: "database",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "database is currently unavailable");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced_at_checkout() {
        let db = TestDatabase::new().await;
        let pool = tiny(db.settings());
        let mut conn = pool.get().await.unwrap();
        let killed = backend_pid(&mut conn).await;
        drop(conn);
        db.terminate(killed).await;
        // The server's FATAL reaches the connection's background task, which closes the client;
        // a moment lets that task run before the next checkout looks.
        tokio::time::sleep(Duration::from_millis(100)).await;

        // The only slot holds the dead connection: the checkout's recycle check finds it closed,
        // discards it and opens another, so the caller never sees the old session.
        let mut conn = pool.get().await.unwrap();
        assert_ne!(backend_pid(&mut conn).await, killed);
        drop(conn);
        let users = PgUserRepository::new(pool.clone());
        assert_eq!(users.find_by_id(UserId::new()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreachable_server_reports_the_database_unavailable() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let pool = build_pool(&PoolSettings {
            url: SecretString::from("postgres://postgres@127.0.0.1:1/markets"),
            max_size: 2,
            wait_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(200),
        })
        .unwrap();
        let error = pool.ping().await.unwrap_err();
        assert!(
            matches!(error, RepositoryError::Unavailable { .. }),
            "{error:?}"
        );
    }
}
