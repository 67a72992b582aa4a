//! `markets serve`.

use anyhow::Context;
use markets_domain::audit::AuditLog;
use markets_domain::error::report;
use markets_local::LocalRateLimiter;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};

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
    let services = Services::build(&settings).await?;
    services
        .search
        .check_dimensions()
        .await
        .context("the embedding provider does not fit the database's vector column")?;
    warm_on_start(&settings, &services).await;
    hint_at_create_admin(&services.auth).await;
    let store = services.store.clone();
    let cache = services.cache.name();
    let indexer = indexer::spawn(services.indexer.clone(), &settings.search);
    let sweeper = sweep_rate_limits(services.local_limiter.clone());
    let purger = purge_audit_trail(services.audit.clone(), settings.audit.retention_days);
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
        cache,
        database = store.name(),
        rate_limit = ?settings.rate_limit_backend(),
        notify = ?settings.notify.backend,
        worker = settings.jobs.run_in_serve,
        "markets listening"
    );
    application.run_until_stopped().await?;
    let _ = stop_worker.send(true);
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    indexer.abort();
    sweeper.abort();
    purger.abort();
    store.close();
    info!("markets stopped");
    Ok(())
}

/// Forgets idle rate-limit keys every minute, so a flood of distinct clients cannot grow the
/// in-process limiter without bound.
/// A fresh installation has no administrator: say how to create one.
async fn hint_at_create_admin(auth: &crate::wiring::AppAuthService) {
    if let Ok(false) = auth.has_admin().await {
        info!(
            "no administrator yet: create one with `markets create-admin --email <address>` \
             (the password is read from standard input)"
        );
    }
}

/// Deletes audit events older than `retention_days`, hourly (never when it is 0).
fn purge_audit_trail(audit: Arc<dyn AuditLog>, retention_days: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if retention_days == 0 {
            return;
        }
        let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let cutoff = chrono::Utc::now() - chrono::Duration::days(retention_days.into());
            match audit.purge_older_than(cutoff).await {
                Ok(0) => {}
                Ok(purged) => info!(purged, retention_days, "audit trail purged"),
                Err(error) => {
                    warn!(error = %report(&error), "purging the audit trail failed; will retry")
                }
            }
        }
    })
}

fn sweep_rate_limits(limiter: Arc<LocalRateLimiter>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            limiter.sweep();
        }
    })
}
