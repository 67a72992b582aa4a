//! Small process and timing helpers shared by the private services.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

pub use markets_postgres::testing::{free_port, run};

/// Sends `signal` (e.g. `STOP`) to the process `pid`, one the test started.
pub fn signal(pid: u32, signal: &str) {
    run(Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]));
}

/// How often [`poll`] looks: often enough to time a recovery to a few tens of milliseconds,
/// seldom enough that a refused connection polled in a loop does not take a core.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Polls `check` until it yields a value or `within` has passed: the time it took and the
/// value, or `None` at the deadline.
pub async fn poll<T, F: Future<Output = Option<T>>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> Option<(Duration, T)> {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(POLL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while start.elapsed() < within {
        ticks.tick().await;
        if let Some(value) = check().await {
            return Some((start.elapsed(), value));
        }
    }
    None
}
