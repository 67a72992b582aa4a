//! The background indexer: embeds markets whose embedding is missing or stale.
//!
//! Staleness is a column set in the same statement as the change (see the migrations), so a
//! crash between a market's commit and its embedding loses nothing: the next sweep finds it.

use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::settings::SearchSettings;
use crate::wiring::AppIndexService;

/// Embeds pending markets in batches, forever: back to back while there is work, then every
/// `index_interval_ms`. Failures are logged and retried on the next round.
pub fn spawn(indexer: AppIndexService, settings: &SearchSettings) -> JoinHandle<()> {
    let (batch, idle) = (
        settings.index_batch,
        Duration::from_millis(settings.index_interval_ms),
    );
    tokio::spawn(async move {
        loop {
            match indexer.index_pending(batch).await {
                Ok(done) if done > 0 => continue,
                Ok(_) => {}
                Err(error) => {
                    warn!(error = %markets_domain::error::report(&error), "indexing failed; will retry")
                }
            }
            tokio::time::sleep(idle).await;
        }
    })
}
