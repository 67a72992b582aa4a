//! The connection pool: bounded, with a wait timeout, every connection set up the same way
//! (WAL, `busy_timeout`, foreign keys, `synchronous = NORMAL`).
//!
//! SQLite lets any number of readers work beside one writer in WAL mode, so a small pool of
//! connections to one file serves concurrent requests. Writers of this process take turns at an
//! in-process gate first (see [`SqlitePool::write`]), so only writers of other processes ever
//! wait on SQLite's lock, for up to `busy_timeout`, after which the database counts as
//! unavailable.

use deadpool::{Runtime, Status};
use diesel::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{BuildError, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use futures_util::FutureExt;
use markets_domain::RepositoryError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::error::{SERVICE, from_pool, from_query};

/// A pooled connection: diesel's synchronous SQLite connection behind diesel-async's wrapper.
pub(crate) type Connection = SyncConnectionWrapper<SqliteConnection>;

/// A pool of connections to one SQLite file. Cheap to clone: clones share the connections and
/// the writer gate.
#[derive(Clone)]
pub struct SqlitePool {
    pool: Pool<Connection>,
    /// Held by the one write of this process that may run; see [`SqlitePool::write`].
    writer: Arc<Mutex<()>>,
    /// How long a write waits for its turn, as a caller waits for a connection.
    wait_timeout: Duration,
    path: PathBuf,
}

/// The writes queued ahead did not let this one start within the wait timeout.
#[derive(Debug, thiserror::Error)]
#[error("no turn to write within {0:?}: the writes queued ahead are stuck or too many")]
struct NoTurnToWrite(Duration);

/// How many connections to keep and how long to wait.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// The most connections open at once (readers run in parallel, writers take turns).
    pub max_size: usize,
    /// How long a caller waits for a free connection, and a write for its turn, before the
    /// database counts as unavailable.
    pub wait_timeout: Duration,
    /// How long a statement waits for another connection's (or process's) write lock before
    /// failing with "database is locked", reported as unavailable.
    pub busy_timeout: Duration,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            max_size: 8,
            wait_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The target names no file.
    #[error("{0:?} is not a SQLite database path (use sqlite:<path>, sqlite://<path> or a path)")]
    InvalidTarget(String),
    /// The folder for the database file could not be created.
    #[error("cannot create the folder {} for the database", .path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pool configuration is invalid.
    #[error("invalid pool configuration")]
    Build(#[from] BuildError),
    /// The file could not be opened or set up (not a database, no permission, locked).
    #[error("cannot open the database {}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RepositoryError,
    },
}

/// The file a target names: `sqlite://<path>`, `sqlite:<path>` or a bare path.
fn database_path(target: &str) -> Result<PathBuf, ConnectError> {
    let path = target
        .strip_prefix("sqlite://")
        .or_else(|| target.strip_prefix("sqlite:"))
        .unwrap_or(target);
    // An in-memory database is private to each connection: a pool of them would be several
    // unrelated databases.
    if path.is_empty() || path == ":memory:" || path.contains("mode=memory") {
        return Err(ConnectError::InvalidTarget(target.to_owned()));
    }
    Ok(PathBuf::from(path))
}

/// Each connection's page cache, in KiB (SQLite's default is 2,000 KiB).
///
/// The cache is per connection, not shared, so the pool holds up to `max_size` of them (32 in
/// production: up to 64 MB at the default, against 16 MB at this size). It buys little
/// here: in WAL mode a connection drops its whole cache whenever another connection has
/// committed since its last transaction, and a miss is a read from the operating system's file
/// cache, which all connections share. Loading the vector index streams every embedding through
/// one connection's cache too, which would otherwise stay full of pages no one reads again.
const CACHE_KIB: u32 = 512;

/// The statements every new connection runs. `busy_timeout` comes first so that switching to
/// WAL waits for a concurrent writer instead of failing. WAL and `synchronous = NORMAL`: readers
/// never block the writer, and a commit is durable once the WAL is checkpointed (a power loss
/// may lose the last commits, never corrupt the file). Foreign keys are off by default in SQLite.
/// A negative `cache_size` is in KiB (see [`CACHE_KIB`]).
fn setup_statements(busy_timeout: Duration) -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -{CACHE_KIB};",
        busy_timeout.as_millis()
    )
}

impl SqlitePool {
    /// Opens (creating if missing, with its folder) the database `target` names, with
    /// [`SqliteSettings::default`].
    ///
    /// # Errors
    /// See [`SqlitePool::connect_with`].
    pub async fn connect(target: &str) -> Result<Self, ConnectError> {
        Self::connect_with(target, &SqliteSettings::default()).await
    }

    /// Opens (creating if missing, with its folder) the database `target` names: `sqlite:<path>`,
    /// `sqlite://<path>` (so `sqlite:///abs/path` is absolute) or a bare path. One connection is
    /// opened at once, so a bad path or a file that is not a database fails here, at start-up.
    ///
    /// # Errors
    /// If the target names no file, the folder cannot be created or the file cannot be opened.
    pub async fn connect_with(
        target: &str,
        settings: &SqliteSettings,
    ) -> Result<Self, ConnectError> {
        let path = database_path(target)?;
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| ConnectError::CreateFolder {
                path: folder.to_owned(),
                source,
            })?;
        }
        let url = path
            .to_str()
            .ok_or_else(|| ConnectError::InvalidTarget(target.to_owned()))?
            .to_owned();
        let setup = setup_statements(settings.busy_timeout);
        let mut config = ManagerConfig::<Connection>::default();
        // Nothing can break a local connection between two uses: no test query on checkout.
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(move |url| {
            let (url, setup) = (url.to_owned(), setup.clone());
            async move {
                let mut conn = Connection::establish(&url).await?;
                conn.batch_execute(&setup)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(settings.max_size)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.busy_timeout + settings.wait_timeout))
            .runtime(Runtime::Tokio1)
            .build()?;
        let pool = Self {
            pool,
            writer: Arc::default(),
            wait_timeout: settings.wait_timeout,
            path,
        };
        pool.ping().await.map_err(|source| ConnectError::Open {
            path: pool.path.clone(),
            source,
        })?;
        Ok(pool)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `task`, which only reads, on a connection's blocking thread and returns what it
    /// returns. The whole task runs there, so a transaction inside it is committed or rolled back
    /// before the connection can be used again, even if the caller stops waiting.
    ///
    /// The wait for a connection and the task run in a task of their own: a caller that stops
    /// waiting (a cancelled request) merely detaches from it. Dropping diesel-async's blocking
    /// call half-way would block the thread to finish it, which panics on the current-thread
    /// runtimes actix-web's workers run.
    ///
    /// Reads never wait for the writer gate: in WAL mode they see the last commit while a write
    /// is under way.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        task: impl FnOnce(&mut SqliteConnection) -> R + Send + 'static,
    ) -> Result<R, RepositoryError> {
        self.spawn(None, task).await
    }

    /// Runs `task`, which writes, as [`SqlitePool::run`] does, once it is this process's turn
    /// to write: every write takes the writer gate, a FIFO lock shared by the pool's clones.
    ///
    /// SQLite lets one connection write at a time. Without the gate the pool's connections
    /// would race for that lock inside SQLite, whose busy handler sleeps with a growing back-off
    /// (up to 100 ms a sleep) and wakes in no order, so under load an unlucky writer waited
    /// nearly a second while others went straight through. Queued at the gate instead, writers
    /// start in arrival order the moment the previous one finishes, and SQLite's lock is only
    /// ever contended by other processes (`markets worker`, `markets reindex`), which
    /// `busy_timeout` still covers.
    ///
    /// The turn is taken before the connection, so a queued write holds no connection that
    /// readers could use, and is kept until the task is over, even if the caller has gone. A
    /// write waits for its turn at most the pool's wait timeout, as for a connection: a queue
    /// that does not move (a write stuck behind another process's lock) fails fast instead of
    /// growing without bound.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        task: impl FnOnce(&mut SqliteConnection) -> R + Send + 'static,
    ) -> Result<R, RepositoryError> {
        self.spawn(Some(Arc::clone(&self.writer)), task).await
    }

    /// `task` on a pooled connection, after taking `gate` if there is one, in a task of its own.
    async fn spawn<R: Send + 'static>(
        &self,
        gate: Option<Arc<Mutex<()>>>,
        task: impl FnOnce(&mut SqliteConnection) -> R + Send + 'static,
    ) -> Result<R, RepositoryError> {
        let (pool, wait) = (self.pool.clone(), self.wait_timeout);
        tokio::spawn(async move {
            let _turn = match gate {
                Some(gate) => Some(
                    tokio::time::timeout(wait, gate.lock_owned())
                        .await
                        .map_err(|_| RepositoryError::unavailable(SERVICE, NoTurnToWrite(wait)))?,
                ),
                None => None,
            };
            let mut conn = pool.get().await.map_err(from_pool)?;
            conn.spawn_blocking(move |conn| Ok(task(conn)))
                .await
                .map_err(from_query)
        })
        .await
        .map_err(RepositoryError::unexpected)?
    }

    /// Checks that a connection can be had and the file read.
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when no connection comes in time or the database is
    /// locked; [`RepositoryError::Unexpected`] if the file is not a database.
    pub async fn ping(&self) -> Result<(), RepositoryError> {
        self.run(|conn| {
            diesel::connection::SimpleConnection::batch_execute(
                conn,
                "SELECT count(*) FROM sqlite_schema",
            )
        })
        .await?
        .map_err(from_query)
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

impl fmt::Debug for SqlitePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlitePool")
            .field("path", &self.path)
            .field("status", &self.pool.status())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;
    use diesel::sql_types::{BigInt, Text};
    use diesel::{QueryDsl, RunQueryDsl};

    #[test]
    fn targets_name_files() {
        for (target, path) in [
            ("sqlite:data/markets.db", "data/markets.db"),
            ("sqlite://data/markets.db", "data/markets.db"),
            ("sqlite:///var/lib/markets.db", "/var/lib/markets.db"),
            ("/var/lib/markets.db", "/var/lib/markets.db"),
            ("markets.db", "markets.db"),
        ] {
            assert_eq!(database_path(target).unwrap(), Path::new(path), "{target}");
        }
        for target in ["", "sqlite:", "sqlite::memory:", ":memory:"] {
            assert!(database_path(target).is_err(), "{target}");
        }
    }

    #[tokio::test]
    async fn connecting_creates_the_folder_and_sets_every_connection_up() {
        let dir = tempfile::tempdir().unwrap();
        let target = format!("sqlite://{}/nested/deeper/markets.db", dir.path().display());
        let pool = SqlitePool::connect(&target).await.unwrap();
        assert!(dir.path().join("nested/deeper/markets.db").exists());

        #[derive(diesel::QueryableByName)]
        struct Text1 {
            #[diesel(sql_type = Text)]
            journal_mode: String,
        }
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = BigInt)]
            value: i64,
        }
        let (mode, settings) = pool
            .run(|conn| {
                let mode = diesel::sql_query("PRAGMA journal_mode").get_result::<Text1>(conn)?;
                let settings = diesel::sql_query(
                    "SELECT timeout AS value FROM pragma_busy_timeout \
                     UNION ALL SELECT foreign_keys FROM pragma_foreign_keys \
                     UNION ALL SELECT synchronous FROM pragma_synchronous \
                     UNION ALL SELECT cache_size FROM pragma_cache_size",
                )
                .load::<Setting>(conn)?;
                diesel::QueryResult::Ok((mode.journal_mode, settings))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode, "wal");
        let values: Vec<i64> = settings.iter().map(|s| s.value).collect();
        // 1 is NORMAL; a negative cache size is in KiB.
        assert_eq!(values, [5000, 1, 1, -i64::from(CACHE_KIB)]);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "not a database, just some text that is long enough").unwrap();
        let refused = SqlitePool::connect(path.to_str().unwrap()).await;
        assert!(
            matches!(refused, Err(ConnectError::Open { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_exhausted_pool_reports_the_database_unavailable() {
        let db = TestDatabase::new().await;
        let settings = SqliteSettings {
            max_size: 1,
            wait_timeout: Duration::from_millis(100),
            ..SqliteSettings::default()
        };
        let pool = SqlitePool::connect_with(db.path().to_str().unwrap(), &settings)
            .await
            .unwrap();
        let _held = pool.pool.get().await.unwrap();
        let error = pool.ping().await.unwrap_err();
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
    }

    #[tokio::test]
    async fn a_writer_locked_out_past_busy_timeout_reports_the_database_unavailable() {
        let db = TestDatabase::new().await;
        let settings = SqliteSettings {
            busy_timeout: Duration::from_millis(50),
            ..SqliteSettings::default()
        };
        let impatient = SqlitePool::connect_with(db.path().to_str().unwrap(), &settings)
            .await
            .unwrap();
        // Another connection holds the write lock for longer than the busy timeout.
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let pool = db.pool();
        let holder = tokio::spawn(async move {
            pool.write(move |conn| {
                diesel::sql_query("BEGIN IMMEDIATE").execute(conn)?;
                let _ = locked_tx.send(());
                let _ = released.recv();
                diesel::sql_query("ROLLBACK").execute(conn)
            })
            .await
        });
        tokio::task::spawn_blocking(move || locked.recv())
            .await
            .unwrap()
            .unwrap();
        // Its own pool, with its own writer gate: another process, as far as the gate knows.
        let error = impatient
            .write(|conn| diesel::sql_query("DELETE FROM revoked_tokens").execute(conn))
            .await
            .unwrap()
            .map_err(from_query)
            .unwrap_err();
        release.send(()).unwrap();
        holder.await.unwrap().unwrap().unwrap();
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
    }

    #[tokio::test]
    async fn concurrent_writers_of_one_pool_take_turns_instead_of_timing_out() {
        use crate::SqliteMarketRepository;
        use markets_domain::jobs::{JobKind, NewJob};
        use markets_domain::market::{
            Description, MarketId, MarketName, MarketRepository, MarketStatus, NewMarket, Volume,
        };

        let db = TestDatabase::new().await;
        let creator = db.user("ann").await;
        // Eight connections writing at once, and a busy timeout far shorter than a write: any
        // writer that met another on SQLite's lock would fail with "database is locked".
        let settings = SqliteSettings {
            max_size: 8,
            busy_timeout: Duration::from_millis(1),
            ..SqliteSettings::default()
        };
        let pool = SqlitePool::connect_with(db.path().to_str().unwrap(), &settings)
            .await
            .unwrap();
        let markets = SqliteMarketRepository::new(pool.clone());
        let creates = (0..64).map(|n| {
            let markets = markets.clone();
            tokio::spawn(async move {
                let market = NewMarket {
                    id: MarketId::new(),
                    creator_id: creator,
                    name: MarketName::parse(&format!("Concurrent market {n}")).unwrap(),
                    description: Description::parse("written beside 63 others").unwrap(),
                    status: MarketStatus::Open,
                    volume: Volume::ZERO,
                };
                let jobs = JobKind::ALL.map(|kind| NewJob::new(kind, market.id));
                markets.create(market, &jobs).await
            })
        });
        for created in futures_util::future::join_all(creates).await {
            created.unwrap().unwrap();
        }
        let stored = pool
            .run(|conn| {
                crate::schema::markets::table
                    .count()
                    .get_result::<i64>(conn)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, 64);
    }
}
