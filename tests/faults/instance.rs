//! One `markets serve` process of the binary cargo built for this test, on the private
//! PostgreSQL and a Redis URL of the scenario's choosing, configured so that outages answer
//! fast: commands to Redis give up after 100 ms, a request waits at most 300 ms for a database
//! connection. Its log goes to a file beside the scenario's other files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::process::free_port;

/// The JWT secret every instance signs with (they must accept each other's tokens).
const SECRET: &str = "fault tests secret that is comfortably longer than 32 bytes";
/// Prepended to the instances' Redis keys (the cache's are `<prefix>market:<id>`).
pub const KEY_PREFIX: &str = "faults:";
/// The administrator the harness acts as.
pub const ADMIN_EMAIL: &str = "admin@faults.example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "fault-tests-password";

/// A running instance, killed by pid when dropped.
#[derive(Debug)]
pub struct Instance {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its log.
    pub log: PathBuf,
    child: Child,
}

/// The configuration every process of a scenario shares (instances and `create-admin`).
fn markets(database_url: &str, redis_url: &str) -> Command {
    let binary = std::env::var("MARKETS_BIN").unwrap_or(env!("CARGO_BIN_EXE_markets").to_owned());
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs([
            ("APP_ENV", "test"),
            ("DATABASE_URL", database_url),
            ("REDIS_URL", redis_url),
            ("JWT_SECRET", SECRET),
            ("RUST_LOG", "warn"),
            ("MARKETS__REDIS__KEY_PREFIX", KEY_PREFIX),
            ("MARKETS__REDIS__TIMEOUT_MS", "100"),
            ("MARKETS__DATABASE__POOL_SIZE", "8"),
            ("MARKETS__DATABASE__WAIT_TIMEOUT_MS", "300"),
            ("MARKETS__DATABASE__CONNECT_TIMEOUT_MS", "300"),
            ("MARKETS__CACHE__WARM_ON_START", "false"),
            // The production default (the test configuration's is looser, for the suite's
            // shared PostgreSQL; here each scenario has its own).
            ("MARKETS__CACHE__PROPAGATION_MS", "1000"),
            // The load is one client address and one user: no limit may refuse it.
            ("MARKETS__RATE_LIMIT__SEARCH__LIMIT", "1000000"),
            ("MARKETS__RATE_LIMIT__WRITES__LIMIT", "1000000"),
            // Jobs refused during an outage are tried again soon after it.
            ("MARKETS__JOBS__RETRY_BASE_MS", "50"),
            ("MARKETS__JOBS__RETRY_MAX_MS", "500"),
            ("MARKETS__JOBS__POLL_INTERVAL_MS", "200"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Migrates the database and creates the harness's administrator, with `markets create-admin`.
pub fn create_admin(database_url: &str, redis_url: &str) {
    let output = markets(database_url, redis_url)
        .args([
            "create-admin",
            "--email",
            ADMIN_EMAIL,
            "--password-env",
            "FAULTS_PASSWORD",
        ])
        .env("FAULTS_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "create-admin failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Instance {
    /// Starts `markets serve --no-migrate` on a free port (the database is migrated already).
    pub fn start(database_url: &str, redis_url: &str, log: &Path) -> Self {
        let port = free_port();
        let child = markets(database_url, redis_url)
            .args(["serve", "--no-migrate"])
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self {
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
            child,
        }
    }

    /// Panics, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{} exited ({status}): {log}", self.base);
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
