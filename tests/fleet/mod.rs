//! The fleet harness: the fleet `scripts/fleet.sh up` brought up, as its output left it in the
//! environment; the components a scenario stops, by the PIDs the script recorded; the restore
//! (`up` again); and polling for a condition with a deadline.

pub mod api;
pub mod load;
pub mod redis;
pub mod report;

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use api::Api;

/// What to run first, for the message of a run without a fleet.
const BRING_UP: &str = "bring the fleet up first, in this shell: \
    eval \"$(MARKETS_BIN=target/debug/markets FLEET_REPLICAS=1 scripts/fleet.sh up)\"";

/// The deadline of anything that must happen (a failover, a restart, a fresh read): far above
/// what it takes, so that reaching it means it did not happen.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`poll`] looks: often enough to time a recovery to a tenth of a second, seldom
/// enough to leave the two cores to the fleet.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The fleet, and a client of it.
#[derive(Debug)]
pub struct Fleet {
    /// nginx, balancing across the instances.
    pub url: String,
    /// Each instance's own URL.
    pub instances: Vec<String>,
    /// Every Redis node, `host:port`.
    pub redis_nodes: Vec<String>,
    /// The read replica, `host:port`, as readiness names it.
    pub replica: String,
    /// Where the script keeps the PIDs (`pids/<name>.pid`).
    dir: PathBuf,
    pub api: Api,
}

impl Fleet {
    /// The fleet the environment describes; panics, saying how to bring one up, without it.
    pub fn from_env() -> Self {
        let instances = list(&var("FLEET_INSTANCES"));
        assert!(
            instances.len() >= 2,
            "FLEET_INSTANCES names {} instance(s), the fleet tests need two",
            instances.len()
        );
        Self {
            url: var("FLEET_URL"),
            instances,
            redis_nodes: list(&var("FLEET_REDIS_NODES")),
            replica: host_port(&var("FLEET_REPLICA_URL")),
            dir: PathBuf::from(var("FLEET_DIR")),
            api: Api::new(),
        }
    }

    /// The first two instances.
    pub fn pair(&self) -> (&str, &str) {
        (&self.instances[0], &self.instances[1])
    }

    /// The PID `scripts/fleet.sh` recorded for component `name` (`serve-8181`, `redis-7001`,
    /// `pg-replica`).
    pub fn pid(&self, name: &str) -> Result<String, String> {
        let file = self.dir.join("pids").join(format!("{name}.pid"));
        let pid = std::fs::read_to_string(&file)
            .map_err(|error| format!("no PID of {name} in {}: {error}", file.display()))?;
        Ok(pid.trim().to_owned())
    }

    /// Sends `signal` (`KILL`, `INT`) to component `name`.
    pub fn signal(&self, name: &str, signal: &str) -> Result<(), String> {
        let pid = self.pid(name)?;
        run(Command::new("kill").arg(format!("-{signal}")).arg(&pid)).map(drop)
    }

    /// `scripts/fleet.sh up`, then `status`: restarts whatever a fault stopped (with the
    /// settings the environment inherited from the `up` that brought the fleet up, which this
    /// one must repeat), and checks that every component is up again. The time `up` took.
    pub async fn restore(&self) -> Result<Duration, String> {
        let started = Instant::now();
        tokio::task::spawn_blocking(|| {
            run(&mut script("up"))?;
            run(&mut script("status"))
        })
        .await
        .map_err(|error| format!("the restore panicked: {error}"))??;
        Ok(started.elapsed())
    }
}

/// A variable `scripts/fleet.sh up` exports; panics, saying how to bring the fleet up, without it.
fn var(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {BRING_UP}"))
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::to_owned).collect()
}

/// `host:port` of a `postgres://[user@]host:port/database` URL.
fn host_port(url: &str) -> String {
    let authority = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("FLEET_REPLICA_URL is no postgres:// URL: {url}"));
    authority.rsplit('@').next().unwrap_or(authority).to_owned()
}

/// `scripts/fleet.sh COMMAND` of this checkout.
fn script(command: &str) -> Command {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fleet.sh");
    let mut script = Command::new(path);
    script.arg(command);
    script
}

/// Runs `command` to completion: its standard output, or what it said when it failed.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{command:?} failed ({}): {stdout}\n{stderr}",
            output.status
        ))
    }
}

/// A short blocking command (`redis-cli`), run without stalling the load's tasks.
pub fn blocking<T>(command: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(command)
}

/// Polls `check` every [`POLL_EVERY`] until it succeeds: its value, or, at the [`DEADLINE`],
/// an error naming `what` and what `check` last saw.
pub async fn poll<T, F>(what: &str, mut check: impl FnMut() -> F) -> Result<T, String>
where
    F: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match check().await {
            Ok(value) => return Ok(value),
            Err(last) if start.elapsed() >= DEADLINE => {
                return Err(format!("{what}: not within {DEADLINE:?}; last: {last}"));
            }
            Err(_) => {}
        }
    }
}

/// The port of a `host:port` or `http://host:port`, which names its component's PID file
/// (`serve-<port>`, `redis-<port>`).
pub fn port(address: &str) -> &str {
    address.rsplit(':').next().unwrap_or(address)
}

/// Seconds, to a tenth, for the report.
pub fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
