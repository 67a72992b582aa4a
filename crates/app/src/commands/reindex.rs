//! `markets reindex`.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use crate::settings::Settings;
use crate::wiring::Components;

/// Marks every market stale (unless resuming), then embeds the pending ones batch by batch,
/// showing progress. Stopping half-way loses nothing: the rest stay pending.
///
/// # Errors
/// If the database or the embedding provider fails (what is done stays done).
pub async fn reindex(
    settings: &Settings,
    components: &Components,
    resume: bool,
) -> anyhow::Result<()> {
    let indexer = components.infra.indexer();
    // Queries and indexing embed with the same provider, so the query side's check holds for both.
    components
        .state
        .search()
        .check_dimensions()
        .await
        .context("the embedding provider does not fit the database's vector column")?;
    if !resume {
        indexer.reindex_all().await?;
    }
    let total = indexer.pending().await?;
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} markets ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let done = indexer.index_pending(settings.search.index_batch).await?;
        if done == 0 {
            break;
        }
        progress.inc(done as u64);
    }
    progress.finish();
    info!(
        markets = total,
        embeddings = components.infra.embeddings(),
        "reindexed"
    );
    Ok(())
}
