//! `markets serve`: the HTTP server, and beside it the background work of a serving instance
//! (the search indexer, the job worker unless `jobs.run_in_serve` is off, the audit-trail purge,
//! the flush of the tallied refusals and the sweep of the in-process rate limiter), all stopped in
//! order on SIGTERM or SIGINT.

use anyhow::Context;
use markets_application::{indexer, maintenance};
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

use super::migrate::migrate;
use super::warm_cache::warm_on_start;
use crate::settings::Settings;
use crate::startup::Application;
use crate::wiring::{AppAuthService, Components};

/// Migrates (unless told not to), wires the services and serves until SIGTERM or SIGINT, then
/// lets in-flight requests finish within the configured deadline.
///
/// # Errors
/// If migrating, wiring or binding fails.
pub async fn serve(settings: Settings, run_migrations: bool) -> anyhow::Result<()> {
    if run_migrations && settings.database.migrate_on_start {
        migrate(&settings).await?;
    }
    let components = Components::build(&settings).await?;
    let (state, infra) = (&components.state, &components.infra);
    state
        .search()
        .fit_dimensions()
        .await
        .context("the embedding provider does not fit the database's vector column")?;
    warm_on_start(&settings, state.markets()).await;
    hint_at_create_admin(state.auth()).await;
    let indexer = indexer::spawn(
        infra.indexer().clone(),
        Duration::from_millis(settings.search.index_interval_ms),
    );
    // Idle keys are forgotten every minute, so a flood of distinct clients cannot grow the
    // in-process limiter without bound.
    let limiter = infra.local_limiter().clone();
    let sweeper = maintenance::every(Duration::from_secs(60), move || limiter.sweep());
    let purger =
        maintenance::purge_audit_trail(state.audit().clone(), settings.audit.retention_days);
    let key_purger = maintenance::purge_idempotency_keys(infra.ports().markets.clone());
    let (stop_flusher, flusher_stopped) = watch::channel(false);
    let flusher = maintenance::flush_tallies(state.events().clone(), flusher_stopped);
    let (stop_worker, worker_stopped) = watch::channel(false);
    let worker = settings
        .jobs
        .run_in_serve
        .then(|| tokio::spawn(infra.worker(&settings.jobs).run(worker_stopped)));
    let application = Application::build(&settings, &components)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        environment = settings.environment.as_str(),
        address = %application.address(),
        metrics = %application
            .metrics_address()
            .map_or_else(|| "beside the API".to_owned(), |address| address.to_string()),
        embeddings = infra.embeddings(),
        cache = infra.cache().name(),
        database = infra.store().name(),
        rate_limit = ?settings.rate_limit_backend(),
        notify = ?settings.notify.backend,
        worker = settings.jobs.run_in_serve,
        "markets listening"
    );
    application.run_until_stopped().await?;
    // Requests are over: the refusals they counted reach the trail before the store closes.
    let _ = stop_flusher.send(true);
    let _ = flusher.await;
    let _ = stop_worker.send(true);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    indexer.abort();
    sweeper.abort();
    purger.abort();
    key_purger.abort();
    infra.store().close();
    info!("markets stopped");
    Ok(())
}

/// A fresh installation has no administrator: say how to create one.
async fn hint_at_create_admin(auth: &AppAuthService) {
    if let Ok(false) = auth.has_admin().await {
        info!(
            "no administrator yet: create one with `markets create-admin --email <address>` \
             (the password is read from standard input)"
        );
    }
}
