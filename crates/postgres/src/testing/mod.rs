//! A freshly migrated database per test, so tests run in parallel and leave nothing behind.
//!
//! The first test of a run migrates a template database (named after a fingerprint of the
//! migrations, so a changed migration gets a new template); every test then clones it with
//! `CREATE DATABASE ... TEMPLATE`, which takes milliseconds, and drops its clone when done.
//!
//! The server is the one `DATABASE_URL` names, or `postgres://postgres@127.0.0.1:5433/postgres`
//! (what `scripts/services.sh up` starts). It must have pgvector.
//!
//! Tests that stop, pause or replicate a server start a [`PrivatePostgres`] of their own.

mod private;

pub use private::{PrivatePostgres, free_port, run};

use diesel::sql_types::{BigInt, Bool, Integer, Text};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use secrecy::SecretString;
use std::time::Duration;
use url::Url;

use markets_domain::auth::PasswordHash;
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email, NewUser, UserId, UserRepository};

use crate::PgUserRepository;
use crate::migrate::run_migrations;
use crate::pool::{PgPool, PoolSettings, build_pool};

/// The server used when `DATABASE_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5433/postgres";

const TEMPLATE: &str = concat!("markets_template_", env!("MARKETS_MIGRATIONS_FINGERPRINT"));
const TEMPLATE_LOCK_KEY: i64 = 0x7465_6d70_6c61_7465; // "template" in ASCII

type TestResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A migrated database of one's own, dropped (with its connections) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    server: Url,
    pool: PgPool,
    settings: PoolSettings,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

impl TestDatabase {
    /// Creates a database cloned from the migrated template.
    ///
    /// # Panics
    /// If the server cannot be reached or the database cannot be created: a test cannot go on.
    pub async fn new() -> Self {
        Self::create_from(Some(TEMPLATE))
            .await
            .unwrap_or_else(|error| cannot_create(&*error))
    }

    /// Creates an empty database with no schema at all, e.g. to test migrating.
    ///
    /// # Panics
    /// As [`TestDatabase::new`].
    pub async fn unmigrated() -> Self {
        Self::create_from(None)
            .await
            .unwrap_or_else(|error| cannot_create(&*error))
    }

    async fn create_from(template: Option<&str>) -> TestResult<Self> {
        let server = server_url();
        let mut admin = AsyncPgConnection::establish(server.as_str()).await?;
        let name = format!("markets_test_{}", uuid::Uuid::new_v4().simple());
        let statement = match template {
            Some(template) => {
                ensure_template(&mut admin, &server).await?;
                format!("CREATE DATABASE {name} TEMPLATE {template}")
            }
            None => format!("CREATE DATABASE {name}"),
        };
        admin.batch_execute(&statement).await?;
        let settings = PoolSettings {
            url: SecretString::from(database_url(&server, &name).to_string()),
            max_size: 8,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        };
        let pool = build_pool(&settings)?;
        Ok(Self {
            name,
            server,
            pool,
            settings,
        })
    }

    /// The pool connected to this database.
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// Stores a user named `name` (`<name>@example.com`, role `user`) and returns its id: the
    /// creator that market tests need.
    ///
    /// # Panics
    /// If the user cannot be stored (e.g. the name is taken).
    pub async fn user(&self, name: &str) -> UserId {
        let new = NewUser {
            id: UserId::new(),
            email: Email::parse(&format!("{name}@example.com"))
                .unwrap_or_else(|error| panic!("bad test user name {name:?}: {error}")),
            display_name: DisplayName::parse(name)
                .unwrap_or_else(|error| panic!("bad test user name {name:?}: {error}")),
            password_hash: PasswordHash::new("not a real hash"),
            role: Role::User,
            email_verified: true,
        };
        match PgUserRepository::new(self.pool()).create(new).await {
            Ok(user) => user.id,
            Err(error) => panic!("cannot store test user {name}: {error}"),
        }
    }

    /// Lets new sessions into this database, or refuses them all (superusers included) until
    /// allowed again; sessions already open stay: how a network cut looks to a reconnecting
    /// client.
    ///
    /// # Panics
    /// If the server cannot be reached.
    pub async fn allow_connections(&self, allowed: bool) {
        let changed = async {
            let mut admin = AsyncPgConnection::establish(self.server.as_str()).await?;
            let statement = format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allowed}", self.name);
            admin.batch_execute(&statement).await?;
            TestResult::Ok(())
        };
        if let Err(error) = changed.await {
            panic!("cannot set ALLOW_CONNECTIONS on {}: {error}", self.name);
        }
    }

    /// The settings `pool` was built with, to build another pool (e.g. a tiny one) on it.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Ends the server session `pid` as an administrator or a fast shutdown would (the server
    /// sends FATAL 57P01 and closes the socket), and waits until that backend has exited: how a
    /// restart looks to the connections it cuts.
    ///
    /// # Panics
    /// If the server cannot be reached, or the session is unknown or still there after 5 s.
    pub async fn terminate(&self, pid: i32) {
        let ended = async {
            let mut admin = AsyncPgConnection::establish(self.server.as_str()).await?;
            // With a timeout, pg_terminate_backend waits for the backend to exit (PostgreSQL 14+).
            let ended = sql_query("SELECT pg_terminate_backend($1, 5000) AS ended")
                .bind::<Integer, _>(pid)
                .get_result::<Terminated>(&mut admin)
                .await?;
            TestResult::Ok(ended.ended)
        };
        match ended.await {
            Ok(true) => {}
            Ok(false) => panic!("server session {pid} did not end"),
            Err(error) => panic!("cannot terminate server session {pid}: {error}"),
        }
    }
}

/// The server process serving `conn` (`pg_backend_pid()`), e.g. to [`TestDatabase::terminate`]
/// it.
///
/// # Panics
/// If the query fails.
pub async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    match sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<BackendPid>(conn)
        .await
    {
        Ok(row) => row.pid,
        Err(error) => panic!("cannot read the backend pid: {error}"),
    }
}

/// A statement prepared on a session, as `pg_prepared_statements` lists it.
#[derive(Debug, Clone, QueryableByName)]
pub struct PreparedStatement {
    /// Its SQL text.
    #[diesel(sql_type = Text)]
    pub statement: String,
    /// How many times it ran: each execution picks a generic or a custom plan.
    #[diesel(sql_type = BigInt)]
    pub executions: i64,
}

/// The statements prepared on the session behind the next connection `pool` gives, e.g. to
/// show that a query is prepared once and then only executed. Meant for a pool of one
/// connection, whose session is then the one the adapters used. (This query itself is not
/// cached, so it does not list itself.)
///
/// # Panics
/// If no connection can be had or the query fails.
pub async fn prepared_statements(pool: &PgPool) -> Vec<PreparedStatement> {
    let listed = async {
        let mut conn = pool.get().await?;
        let statements = sql_query(
            "SELECT statement, generic_plans + custom_plans AS executions \
             FROM pg_prepared_statements ORDER BY prepare_time",
        )
        .load::<PreparedStatement>(&mut conn)
        .await?;
        TestResult::Ok(statements)
    };
    listed
        .await
        .unwrap_or_else(|error| panic!("cannot list the prepared statements: {error}"))
}

#[derive(QueryableByName)]
struct Terminated {
    #[diesel(sql_type = Bool)]
    ended: bool,
}

#[derive(QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.pool.close();
        let server = self.server.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(server.as_str()).await?;
                admin.batch_execute(&statement).await?;
                TestResult::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Creates and migrates the template once per migration fingerprint, under an advisory lock so
/// that concurrent test processes wait for the first one instead of racing it.
async fn ensure_template(admin: &mut AsyncPgConnection, server: &Url) -> TestResult<()> {
    admin
        .batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .await?;
    let outcome = create_template_if_missing(admin, server).await;
    admin
        .batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .await?;
    outcome
}

async fn create_template_if_missing(admin: &mut AsyncPgConnection, server: &Url) -> TestResult<()> {
    let existing = sql_query("SELECT count(*) AS count FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(TEMPLATE)
        .get_result::<Exists>(admin)
        .await?;
    if existing.count > 0 {
        return Ok(());
    }
    // Migrate under a scratch name and rename at the end: a run that dies half-way leaves no
    // template that looks complete.
    let scratch = format!("{TEMPLATE}_building");
    // Each its own statement: several in one batch would form a transaction, which
    // CREATE/DROP DATABASE refuse.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {scratch}"))
        .await?;
    let url = SecretString::from(database_url(server, &scratch).to_string());
    run_migrations(&url).await?;
    admin
        .batch_execute(&format!("ALTER DATABASE {scratch} RENAME TO {TEMPLATE}"))
        .await?;
    admin
        .batch_execute(&format!("ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true"))
        .await?;
    Ok(())
}

fn cannot_create(error: &(dyn std::error::Error + Send + Sync)) -> ! {
    panic!(
        "cannot create a test database on {}: {error} (run `scripts/services.sh up`)",
        redacted(&server_url())
    )
}

fn server_url() -> Url {
    let raw = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
    match Url::parse(&raw) {
        Ok(url) => url,
        Err(error) => panic!("DATABASE_URL is not a valid URL: {error}"),
    }
}

fn database_url(server: &Url, database: &str) -> Url {
    let mut url = server.clone();
    url.set_path(database);
    url
}

fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}
