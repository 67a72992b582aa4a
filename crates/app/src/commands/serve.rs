//! `markets serve`.

use actix_web::{App, HttpServer, web};
use std::net::TcpListener;
use tracing::info;

use crate::commands::migrate;
use crate::http;
use crate::settings::Settings;
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
    let services = web::Data::new(Services::build(&settings)?);
    let pool = services.pool.clone();
    let listener = TcpListener::bind(settings.server.bind_addr)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        environment = settings.environment.as_str(),
        address = %listener.local_addr()?,
        "markets listening"
    );
    HttpServer::new(move || {
        App::new()
            .app_data(services.clone())
            .configure(http::routes)
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .listen(listener)?
    .run()
    .await?;
    pool.close();
    info!("markets stopped");
    Ok(())
}
