//! `markets reindex`.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use markets_application::indexer::index_once;
use std::time::Duration;
use tracing::info;

use crate::settings::Settings;
use crate::wiring::Components;

/// Switches the index to the provider's dimensions if they differ (dropping the embeddings of
/// the previous provider), marks every market stale (unless resuming), then embeds the pending
/// ones batch by batch,
/// showing progress, until none is pending: markets that other runners (a serving instance's
/// jobs and sweep) hold are theirs to embed, so once nothing is left to claim it waits for them.
/// Stopping half-way loses nothing: the rest stay pending.
///
/// # Errors
/// If the database or the embedding provider fails (what is done stays done).
pub async fn reindex(
    settings: &Settings,
    components: &Components,
    resume: bool,
) -> anyhow::Result<()> {
    let indexer = components.infra.indexer();
    // Queries and indexing embed with the same provider, so the query side's size holds for both.
    let search = components.state.search();
    if !resume && search.adopt_dimensions().await? {
        info!(
            embeddings = components.infra.embeddings(),
            "dropped the embeddings of another size: the index now takes this provider's"
        );
    }
    search
        .fit_dimensions()
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
    let idle = Duration::from_millis(settings.search.index_interval_ms);
    loop {
        let done = index_once(indexer).await?;
        let left = indexer.pending().await?;
        progress.set_position(total.saturating_sub(left));
        if left == 0 {
            break;
        }
        if done == 0 {
            tokio::time::sleep(idle).await;
        }
    }
    progress.finish();
    info!(
        markets = total,
        embeddings = components.infra.embeddings(),
        "reindexed"
    );
    Ok(())
}
