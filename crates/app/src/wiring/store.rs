//! The database the service runs on, chosen by `DATABASE_URL`: PostgreSQL (`postgres://`) for
//! deployments of several instances, or an embedded SQLite file (`sqlite:`, the default) that
//! needs no server at all. Either way the same ports come out, as trait objects.

use markets_application::wakeups::Polling;
use markets_domain::audit::AuditLog;
use markets_domain::auth::TokenRevocations;
use markets_domain::jobs::{JobQueue, JobWakeups};
use markets_domain::market::MarketRepository;
use markets_domain::search::{IndexBacklog, VectorIndex};
use markets_domain::user::UserRepository;
use markets_local::SingleFlight;
use markets_postgres::{
    Background, PgAuditLog, PgJobQueue, PgJobWakeups, PgMarketRepository, PgRevocations,
    PgUserRepository, PgVectorIndex, ReadRouting, ReplicaState,
};
use markets_sqlite::{
    SqliteAuditLog, SqliteJobQueue, SqliteMarketRepository, SqlitePool, SqliteRevocations,
    SqliteUserRepository, SqliteVectorIndex,
};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

use crate::settings::Settings;

/// A connection pool to one of the supported databases.
#[derive(Debug, Clone)]
pub enum Store {
    /// PostgreSQL with pgvector, and its read replicas if any.
    Postgres(PgStore),
    /// An embedded SQLite file.
    Sqlite(SqlitePool),
}

/// The PostgreSQL primary's pool and the replicas' pools, with the task that probes the
/// replicas (stopped when the last clone is dropped).
#[derive(Debug, Clone)]
pub struct PgStore {
    reads: ReadRouting,
    _probe: Option<Arc<Background>>,
}

impl PgStore {
    /// Pools for the primary and every replica in `[database]`, all with the primary's pool
    /// settings; the replicas' probe starts now.
    fn open(settings: &Settings) -> anyhow::Result<Self> {
        let primary = markets_postgres::build_pool(&pool_settings(settings))?;
        let mut replicas = Vec::new();
        for replica in &settings.database.replica_urls {
            let pool = markets_postgres::PoolSettings {
                url: replica.secret().clone(),
                ..pool_settings(settings)
            };
            replicas.push((
                replica.name().to_owned(),
                markets_postgres::build_pool(&pool)?,
            ));
        }
        let reads = ReadRouting::new(primary, replicas);
        let max_lag = Duration::from_millis(settings.database.max_replica_lag_ms);
        let probe = reads.spawn_probe(max_lag).map(Arc::new);
        Ok(Self {
            reads,
            _probe: probe,
        })
    }
}

/// The storage ports, implemented by one [`Store`].
#[derive(Debug, Clone)]
pub struct StoreAdapters {
    /// Markets (and the jobs written with them).
    pub markets: Arc<dyn MarketRepository>,
    /// Users.
    pub users: Arc<dyn UserRepository>,
    /// Market embeddings, to search them.
    pub index: Arc<dyn VectorIndex>,
    /// The markets waiting for an embedding, and where embeddings are stored.
    pub backlog: Arc<dyn IndexBacklog>,
    /// The job outbox.
    pub jobs: Arc<dyn JobQueue>,
    /// Revoked tokens, durably.
    pub revocations: Arc<dyn TokenRevocations>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
}

/// Whether `url` names an embedded SQLite database rather than a PostgreSQL server.
pub fn is_sqlite(url: &SecretString) -> bool {
    url.expose_secret().starts_with("sqlite:")
}

/// The SQLite pool's settings, from `[database]`.
fn sqlite_settings(settings: &Settings) -> markets_sqlite::SqliteSettings {
    markets_sqlite::SqliteSettings {
        max_size: settings.database.pool_size,
        wait_timeout: Duration::from_millis(settings.database.wait_timeout_ms),
        ..markets_sqlite::SqliteSettings::default()
    }
}

/// The PostgreSQL pool's settings, from `[database]`.
fn pool_settings(settings: &Settings) -> markets_postgres::PoolSettings {
    markets_postgres::PoolSettings {
        url: settings.database.url.clone(),
        max_size: settings.database.pool_size,
        wait_timeout: Duration::from_millis(settings.database.wait_timeout_ms),
        connect_timeout: Duration::from_millis(settings.database.connect_timeout_ms),
    }
}

impl Store {
    /// A pool for the configured database. Nothing is contacted yet for PostgreSQL; the SQLite
    /// file (and its folder) is created if missing and opened at once.
    ///
    /// # Errors
    /// If the settings are invalid or the SQLite file cannot be opened.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        Ok(if is_sqlite(&settings.database.url) {
            let url = settings.database.url.expose_secret();
            Self::Sqlite(SqlitePool::connect_with(url, &sqlite_settings(settings)).await?)
        } else {
            Self::Postgres(PgStore::open(settings)?)
        })
    }

    /// `postgres` or `sqlite`, for the start-up line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// The storage ports over this pool.
    pub fn adapters(&self) -> StoreAdapters {
        match self {
            Self::Postgres(store) => {
                let (reads, pool) = (&store.reads, store.reads.primary());
                let index = Arc::new(PgVectorIndex::new(reads.clone()));
                StoreAdapters {
                    markets: Arc::new(SingleFlight::new(PgMarketRepository::new(reads.clone()))),
                    users: Arc::new(PgUserRepository::new(pool.clone())),
                    index: index.clone(),
                    backlog: index,
                    jobs: Arc::new(PgJobQueue::new(pool.clone())),
                    revocations: Arc::new(PgRevocations::new(pool.clone())),
                    audit: Arc::new(PgAuditLog::new(pool.clone())),
                }
            }
            Self::Sqlite(pool) => {
                let index = Arc::new(SqliteVectorIndex::new(pool.clone()));
                StoreAdapters {
                    markets: Arc::new(SingleFlight::new(SqliteMarketRepository::new(pool.clone()))),
                    users: Arc::new(SqliteUserRepository::new(pool.clone())),
                    index: index.clone(),
                    backlog: index,
                    jobs: Arc::new(SqliteJobQueue::new(pool.clone())),
                    revocations: Arc::new(SqliteRevocations::new(pool.clone())),
                    audit: Arc::new(SqliteAuditLog::new(pool.clone())),
                }
            }
        }
    }

    /// Applies pending migrations; returns the versions applied.
    ///
    /// # Errors
    /// If the database is unreachable or a migration fails.
    pub async fn migrate(&self, settings: &Settings) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Postgres(_) => markets_postgres::run_migrations(&settings.database.url).await?,
            Self::Sqlite(pool) => pool.migrate().await?,
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        match self {
            Self::Postgres(store) => store.reads.primary().ping().await.is_ok(),
            Self::Sqlite(pool) => pool.ping().await.is_ok(),
        }
    }

    /// Each read replica as its last probe found it (none for SQLite).
    pub fn replicas(&self) -> Vec<ReplicaState> {
        match self {
            Self::Postgres(store) => store.reads.states(),
            Self::Sqlite(_) => Vec::new(),
        }
    }

    /// The (primary's) pool's connection counts, for `/metrics`.
    pub fn status(&self) -> deadpool::Status {
        match self {
            Self::Postgres(store) => store.reads.primary().status(),
            Self::Sqlite(pool) => pool.status(),
        }
    }

    /// How job workers learn of new jobs: PostgreSQL's `LISTEN`, or polling for SQLite (whose
    /// writers all live in this process and are few).
    pub fn wakeups(&self, settings: &Settings) -> Arc<dyn JobWakeups> {
        match self {
            Self::Postgres(_) => Arc::new(PgJobWakeups::new(settings.database.url.clone())),
            Self::Sqlite(_) => Arc::new(Polling),
        }
    }

    /// Closes the pools.
    pub fn close(&self) {
        match self {
            Self::Postgres(store) => store.reads.close(),
            Self::Sqlite(pool) => pool.close(),
        }
    }
}
