//! `markets worker` and `markets jobs`.

use anyhow::Context;
use markets_application::worker::THROUGHPUT_WINDOW;
use markets_domain::jobs::{JobId, JobQueue, KindStats};
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

use crate::cli::JobsCommand;
use crate::settings::Settings;
use crate::wiring::Infrastructure;

/// Runs the worker until SIGTERM or SIGINT, then shuts it down gracefully.
///
/// # Errors
/// If the worker panics.
pub async fn worker(settings: &Settings, infra: &Infrastructure) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(infra.worker(&settings.jobs).run(stopped));
    info!("job worker running");
    shutdown_signal().await;
    info!("shutdown signal received: stopping the job worker");
    let _ = stop.send(true);
    worker.await.context("the job worker panicked")?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Lists or retries jobs; prints to stdout.
///
/// # Errors
/// On a malformed id or an unreachable database.
pub async fn jobs(queue: &dyn JobQueue, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { dead } => {
            anyhow::ensure!(dead, "only `markets jobs list --dead` is supported");
            for job in queue.dead(1000).await? {
                println!(
                    "{}\t{}\tsubject {}\t{} attempts\tdied {}\t{}",
                    job.id, job.kind, job.subject, job.attempts, job.died_at, job.last_error
                );
            }
        }
        JobsCommand::Stats => {
            let stats = queue.stats(THROUGHPUT_WINDOW).await?;
            print!("{}", stats_table(&stats, THROUGHPUT_WINDOW));
        }
        JobsCommand::Retry { id, all_dead } => {
            let id: Option<JobId> = match (id, all_dead) {
                (_, true) => None,
                (Some(raw), false) => Some(raw.parse().context("not a job id")?),
                (None, false) => anyhow::bail!("name a job id or pass --all-dead"),
            };
            let retried = queue.retry_dead(id).await?;
            println!("{retried}");
        }
    }
    Ok(())
}

/// One line per kind under a header: depth by state, the oldest due job's wait, and the
/// completions per second over `window`.
fn stats_table(stats: &[KindStats], window: Duration) -> String {
    let mut table = format!(
        "{:<24} {:>8} {:>8} {:>8} {:>14} {:>14}\n",
        "kind", "queued", "running", "dead", "oldest due s", "completed/s"
    );
    for kind in stats {
        let oldest = kind
            .oldest_due
            .map_or_else(|| "-".to_owned(), |age| format!("{:.1}", age.as_secs_f64()));
        let rate = kind.completed as f64 / window.as_secs_f64().max(1.0);
        table.push_str(&format!(
            "{:<24} {:>8} {:>8} {:>8} {:>14} {:>14.1}\n",
            kind.kind.as_str(),
            kind.queued,
            kind.running,
            kind.dead,
            oldest,
            rate
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use markets_domain::jobs::JobKind;

    #[test]
    fn the_stats_table_has_a_line_per_kind_with_its_rate() {
        let mut notify = KindStats::new(JobKind::NotifyMarketCreated);
        notify.queued = 3;
        notify.completed = 120;
        notify.oldest_due = Some(Duration::from_millis(2500));
        let index = KindStats::new(JobKind::IndexMarketEmbedding);
        let table = stats_table(&[notify, index], Duration::from_secs(60));
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[1],
            ["notify_market_created", "3", "0", "0", "2.5", "2.0"]
        );
        assert_eq!(
            lines[2],
            ["index_market_embedding", "0", "0", "0", "-", "0.0"]
        );
    }
}
