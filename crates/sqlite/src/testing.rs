//! Test helpers: a freshly migrated database per test, so tests run in parallel and leave nothing
//! behind (a file in a temporary folder of its own, removed with its WAL files when dropped).

use std::path::{Path, PathBuf};
use tempfile::TempDir;

use markets_domain::auth::PasswordHash;
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email, NewUser, UserId, UserRepository};

use crate::SqliteUserRepository;
use crate::pool::SqlitePool;

/// A migrated database of one's own, deleted when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pool: SqlitePool,
    path: PathBuf,
    // Dropped last: removes the folder and everything in it.
    _folder: TempDir,
}

impl TestDatabase {
    /// Creates and migrates a database.
    ///
    /// # Panics
    /// If the database cannot be created or migrated: a test cannot go on.
    pub async fn new() -> Self {
        let db = Self::unmigrated().await;
        if let Err(error) = db.pool.migrate().await {
            panic!("cannot migrate the test database: {error:?}");
        }
        db
    }

    /// Creates an empty database with no schema at all, e.g. to test migrating.
    ///
    /// # Panics
    /// As [`TestDatabase::new`].
    pub async fn unmigrated() -> Self {
        let folder = tempfile::Builder::new()
            .prefix("markets-sqlite-test")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temporary folder: {error}"));
        let path = folder.path().join("markets.db");
        let target = format!("sqlite://{}", path.display());
        let pool = SqlitePool::connect(&target)
            .await
            .unwrap_or_else(|error| panic!("cannot create a test database: {error:?}"));
        Self {
            pool,
            path,
            _folder: folder,
        }
    }

    /// The pool connected to this database.
    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// The database file, to open another pool on it (as another process would).
    pub fn path(&self) -> &Path {
        &self.path
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
        match SqliteUserRepository::new(self.pool()).create(new).await {
            Ok(user) => user.id,
            Err(error) => panic!("cannot store test user {name}: {error}"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.pool.close();
    }
}
