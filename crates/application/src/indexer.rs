//! The background indexer: embeds markets whose embedding is missing or stale.
//!
//! Staleness is a column set in the same statement as the change (see the migrations), so a
//! crash between a market's commit and its embedding loses nothing: the next round finds it.

use markets_domain::error::report;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::handlers::Indexer;

/// Embeds pending markets `batch` at a time, forever: back to back while there is work, then
/// every `idle`. Failures are logged and retried on the next round.
pub fn spawn(indexer: Indexer, batch: usize, idle: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match indexer.index_pending(batch).await {
                Ok(done) if done > 0 => continue,
                Ok(_) => {}
                Err(error) => warn!(error = %report(&error), "indexing failed; will retry"),
            }
            tokio::time::sleep(idle).await;
        }
    })
}
