//! The background indexer: embeds markets whose embedding is missing or stale.
//!
//! Staleness is a column set in the same statement as the change (see the migrations), so a
//! crash between a market's commit and its embedding loses nothing: the next round finds it.
//! Every round, the sweep's and every indexing job's, is [`index_once`]: it claims the markets it
//! embeds, so rounds running at once (here, in jobs, in other processes) never repeat each
//! other's work.

use markets_domain::error::report;
use markets_domain::search::IndexError;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::handlers::Indexer;

/// One round: claims up to a batch of pending markets, embeds them in one provider call, stores
/// them in one write, and counts them in `embeddings_computed_total`; returns how many.
///
/// # Errors
/// If the provider or the index fails; the markets stay pending.
pub async fn index_once(indexer: &Indexer) -> Result<usize, IndexError> {
    let embedded = indexer.index_pending().await?;
    metrics::counter!("embeddings_computed_total").increment(embedded as u64);
    Ok(embedded)
}

/// Runs rounds forever: back to back while there is work, then every `idle`. Failures are
/// logged and retried on the next round.
pub fn spawn(indexer: Indexer, idle: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match index_once(&indexer).await {
                Ok(done) if done > 0 => continue,
                Ok(_) => {}
                Err(error) => warn!(error = %report(&error), "indexing failed; will retry"),
            }
            tokio::time::sleep(idle).await;
        }
    })
}
