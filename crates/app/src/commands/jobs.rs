//! `markets worker` and `markets jobs`.

use anyhow::Context;
use markets_domain::jobs::{JobId, JobQueue};
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
                    "{}\t{}\tmarket {}\t{} attempts\tdied {}\t{}",
                    job.id, job.kind, job.market_id, job.attempts, job.died_at, job.last_error
                );
            }
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
