//! `markets serve`.

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;

use crate::commands::{migrate, warm_on_start};
use crate::indexer;
use crate::settings::Settings;
use crate::startup::Application;
use crate::wiring::Services;

/// Migrates (unless told not to), wires the services and serves until SIGTERM or SIGINT, then
/// lets in-flight requests finish within the configured deadline.
///
/// # Errors
/// If migrating, wiring or binding fails.
pub async fn serve(settings: Settings, run_migrations: bool) -> anyhow::Result<()> {
    if run_migrations && settings.database.migrate_on_start {
        migrate(&settings).await?;
    }
    let services = Services::build(&settings)?;
    services
        .search
        .check_dimensions()
        .await
        .context("the embedding provider does not fit the database's vector column")?;
    warm_on_start(&settings, &services).await;
    let pool = services.pool.clone();
    let indexer = indexer::spawn(services.indexer.clone(), &settings.search);
    let (stop_worker, worker_stopped) = watch::channel(false);
    let worker = settings
        .jobs
        .run_in_serve
        .then(|| tokio::spawn(services.worker(&settings).run(worker_stopped)));
    let embeddings = services.embeddings;
    let application = Application::build(&settings, services)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        environment = settings.environment.as_str(),
        address = %application.address(),
        embeddings,
        cache = "redis",
        database = "postgres",
        "markets listening"
    );
    application.run_until_stopped().await?;
    let _ = stop_worker.send(true);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    indexer.abort();
    pool.close();
    info!("markets stopped");
    Ok(())
}
