//! `markets migrate`.

use tracing::info;

use crate::settings::Settings;
use crate::wiring::Store;

/// Applies pending migrations, logging each one applied.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let applied = Store::open(settings).await?.migrate(settings).await?;
    if applied.is_empty() {
        info!("database schema is up to date");
    }
    for version in applied {
        info!(%version, "applied migration");
    }
    Ok(())
}
