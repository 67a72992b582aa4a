//! `markets migrate`.

use tracing::info;

use crate::settings::Settings;

/// Applies pending migrations, logging each one applied.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let applied = markets_postgres::run_migrations(&settings.database.url).await?;
    if applied.is_empty() {
        info!("database schema is up to date");
    }
    for version in applied {
        info!(%version, "applied migration");
    }
    Ok(())
}
