//! `markets warm-cache`, also run by `serve` at start-up.

use markets_domain::market::PageSize;
use tracing::{info, warn};

use crate::settings::Settings;
use crate::wiring::AppMarketService;

/// Loads the `cache.warm_count` markets with the most volume into the cache: two queries and
/// one cache round trip.
///
/// # Errors
/// If the database or the cache cannot be reached.
pub async fn warm_cache(settings: &Settings, markets: &AppMarketService) -> anyhow::Result<usize> {
    let count = PageSize::new("cache.warm_count", settings.cache.warm_count)?;
    let warmed = markets.warm_cache(count).await?;
    info!(markets = warmed, "cache warmed");
    Ok(warmed)
}

/// Warms the cache at start-up; a failure is logged, never fatal: the cache fills on reads.
pub async fn warm_on_start(settings: &Settings, markets: &AppMarketService) {
    if !settings.cache.warm_on_start {
        return;
    }
    if let Err(error) = warm_cache(settings, markets).await {
        warn!(error = %format!("{error:#}"), "cache warming failed; serving anyway");
    }
}
