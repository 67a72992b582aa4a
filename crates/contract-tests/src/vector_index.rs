//! The contract of [`VectorIndex`]: which markets wait for an embedding, embeddings stored only
//! for the version they were computed from, and nearest neighbours by cosine similarity among
//! the markets that still exist.
//!
//! Markets are created and changed through the fixture's [`MarketRepository`], since an index
//! learns of changes from the market store it sits beside.
//!
//! [`MarketRepository`]: markets_domain::market::MarketRepository

use markets_domain::market::{
    Market, MarketId, MarketName, MarketPatch, MarketRepository, MarketStatus, Volume,
};
use markets_domain::search::{Embedding, IndexBacklog, IndexTask, VectorIndex};

use crate::RepositoryFixture;
use crate::repository::{market, user};

/// A vector index over fresh, empty storage, with the repositories that write that storage.
pub trait VectorIndexFixture: RepositoryFixture {
    /// The index under test, over the same markets as [`RepositoryFixture::Markets`].
    type Index: VectorIndex + IndexBacklog;

    /// The index.
    fn index(&self) -> &Self::Index;
}

/// Generates one `#[test]` per vector index contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of a [`VectorIndexFixture`]).
#[macro_export]
macro_rules! vector_index_contract {
    ($make:expr) => {
        $crate::__contract_cases!(vector_index, $make;
            the_index_stores_embeddings_of_its_dimensions,
            new_markets_are_pending_until_stored,
            only_name_and_description_changes_make_an_embedding_stale,
            pending_follows_the_oldest_change_first_up_to_the_limit,
            an_embedding_for_an_older_version_is_not_stored,
            an_embedding_for_a_deleted_market_is_not_stored,
            mark_all_stale_queues_every_market_again,
            nearest_ranks_by_cosine_similarity,
            nearest_returns_at_most_the_limit,
            nearest_skips_deleted_and_unembedded_markets,
        );
    };
}

/// A unit vector of the index's dimensions along `axis`, tilted towards `axis + 1` by `tilt`.
async fn direction<F: VectorIndexFixture>(fixture: &F, axis: usize, tilt: f32) -> Embedding {
    let dimensions = fixture.index().dimensions().await.unwrap();
    assert!(
        dimensions > axis + 1,
        "the contract needs at least {} dimensions",
        axis + 2
    );
    let mut values = vec![0.0; dimensions];
    values[axis] = 1.0;
    values[axis + 1] = tilt;
    Embedding::new(values).unwrap()
}

/// `count` new open markets by one creator, named `{prefix}{n}`, created in that order.
async fn markets<F: VectorIndexFixture>(fixture: &F, prefix: &str, count: usize) -> Vec<Market> {
    let creator = user(fixture, "ann").await;
    let mut created = Vec::new();
    for n in 0..count {
        let name = format!("{prefix}{n}");
        created.push(market(fixture, &creator, &name, MarketStatus::Open, 0).await);
    }
    created
}

async fn pending_ids<F: VectorIndexFixture>(fixture: &F) -> Vec<MarketId> {
    let pending = fixture.index().pending(1000).await.unwrap();
    pending.into_iter().map(|task| task.id).collect()
}

/// The pending task of market `id`, which must be pending.
async fn task<F: VectorIndexFixture>(fixture: &F, id: MarketId) -> IndexTask {
    let pending = fixture.index().pending(1000).await.unwrap();
    pending
        .into_iter()
        .find(|task| task.id == id)
        .unwrap_or_else(|| panic!("market {id} is not pending"))
}

/// Stores `embedding` for market `id`'s pending task.
async fn embed<F: VectorIndexFixture>(fixture: &F, id: MarketId, embedding: &Embedding) {
    let task = task(fixture, id).await;
    let stored = fixture.index().store(&task, embedding).await.unwrap();
    assert!(stored, "embedding of the current version refused");
}

async fn rename<F: VectorIndexFixture>(fixture: &F, market: &Market, name: &str) -> Market {
    let patch = MarketPatch {
        name: Some(MarketName::parse(name).unwrap()),
        ..MarketPatch::default()
    };
    let markets = fixture.markets();
    let updated = markets.update(market.id, market.version, patch, &[]);
    updated.await.unwrap().expect("the market to rename")
}

/// The index has a positive number of dimensions and stores embeddings of exactly that many.
pub async fn the_index_stores_embeddings_of_its_dimensions<F: VectorIndexFixture>(fixture: &F) {
    let dimensions = fixture.index().dimensions().await.unwrap();
    assert!(dimensions > 0, "an index has at least one dimension");
    let created = markets(fixture, "sized", 1).await.remove(0);
    let embedding = direction(fixture, 0, 0.0).await;
    assert_eq!(embedding.dimensions(), dimensions);
    embed(fixture, created.id, &embedding).await;
    let nearest = fixture.index().nearest(&embedding, 1).await.unwrap();
    assert_eq!(nearest[0].id, created.id);
}

/// A new market is pending, at its version, with its name and description as the text; once
/// its embedding is stored it is not.
pub async fn new_markets_are_pending_until_stored<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "Rain", 1).await.remove(0);
    assert_eq!(fixture.index().pending_count().await.unwrap(), 1);
    let task = task(fixture, created.id).await;
    assert_eq!(task.version, created.version);
    for part in [created.name.as_str(), created.description.as_str()] {
        assert!(task.text.contains(part), "{:?} lacks {part:?}", task.text);
    }
    embed(fixture, created.id, &direction(fixture, 0, 0.0).await).await;
    assert!(pending_ids(fixture).await.is_empty(), "stored yet pending");
    assert_eq!(fixture.index().pending_count().await.unwrap(), 0);
}

/// Changing the volume or status keeps the embedding; renaming makes it pending again, at the
/// new version with the new text.
pub async fn only_name_and_description_changes_make_an_embedding_stale<F: VectorIndexFixture>(
    fixture: &F,
) {
    let created = markets(fixture, "Rain", 1).await.remove(0);
    embed(fixture, created.id, &direction(fixture, 0, 0.0).await).await;
    let patch = MarketPatch {
        volume: Some(Volume::from_cents(5).unwrap()),
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    let updated = fixture
        .markets()
        .update(created.id, created.version, patch, &[]);
    let updated = updated.await.unwrap().unwrap();
    assert!(
        pending_ids(fixture).await.is_empty(),
        "volume or status made it stale"
    );
    let renamed = rename(fixture, &updated, "Snow").await;
    let task = task(fixture, created.id).await;
    assert_eq!(task.version, renamed.version);
    assert!(task.text.contains("Snow"), "{:?}", task.text);
}

/// Pending markets come oldest change first, and at most `limit` of them.
pub async fn pending_follows_the_oldest_change_first_up_to_the_limit<F: VectorIndexFixture>(
    fixture: &F,
) {
    let created = markets(fixture, "m", 3).await;
    let ids: Vec<MarketId> = created.iter().map(|market| market.id).collect();
    assert_eq!(pending_ids(fixture).await, ids);
    rename(fixture, &created[0], "renamed").await;
    assert_eq!(pending_ids(fixture).await, [ids[1], ids[2], ids[0]]);
    let first_two = fixture.index().pending(2).await.unwrap();
    let first_two: Vec<MarketId> = first_two.into_iter().map(|task| task.id).collect();
    assert_eq!(first_two, [ids[1], ids[2]]);
}

/// An embedding computed before a rename is refused, and the market stays pending at its new
/// version.
pub async fn an_embedding_for_an_older_version_is_not_stored<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "Rain", 1).await.remove(0);
    let stale = task(fixture, created.id).await;
    let renamed = rename(fixture, &created, "Snow").await;
    let embedding = direction(fixture, 0, 0.0).await;
    assert!(
        !fixture.index().store(&stale, &embedding).await.unwrap(),
        "an embedding of an older version was stored"
    );
    assert_eq!(task(fixture, created.id).await.version, renamed.version);
    let nearest = fixture.index().nearest(&embedding, 10).await.unwrap();
    assert!(nearest.is_empty(), "the refused embedding is searchable");
}

/// An embedding for a market deleted since its task was read is refused.
pub async fn an_embedding_for_a_deleted_market_is_not_stored<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "Doomed", 1).await.remove(0);
    let task = task(fixture, created.id).await;
    assert!(
        fixture
            .markets()
            .delete(created.id, None, None)
            .await
            .unwrap()
    );
    let embedding = direction(fixture, 0, 0.0).await;
    assert!(!fixture.index().store(&task, &embedding).await.unwrap());
    assert!(pending_ids(fixture).await.is_empty(), "deleted yet pending");
    assert_eq!(fixture.index().pending_count().await.unwrap(), 0);
}

/// `mark_all_stale` marks (and counts) every market not already pending, and all of them are
/// pending afterwards.
pub async fn mark_all_stale_queues_every_market_again<F: VectorIndexFixture>(fixture: &F) {
    let index = fixture.index();
    assert_eq!(index.mark_all_stale().await.unwrap(), 0, "nothing to mark");
    let created = markets(fixture, "m", 3).await;
    for market in &created[..2] {
        embed(fixture, market.id, &direction(fixture, 0, 0.0).await).await;
    }
    assert_eq!(index.pending_count().await.unwrap(), 1);
    assert_eq!(index.mark_all_stale().await.unwrap(), 2, "one was already");
    assert_eq!(index.pending_count().await.unwrap(), 3);
    assert_eq!(pending_ids(fixture).await.len(), 3);
    for market in &created {
        assert_eq!(task(fixture, market.id).await.version, market.version);
    }
}

/// Markets come closest first, scored 1 for the same direction down to 0 for an orthogonal one,
/// never outside `0.0..=1.0`.
pub async fn nearest_ranks_by_cosine_similarity<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "m", 4).await;
    let (far, close, closest, orthogonal) = (&created[0], &created[1], &created[2], &created[3]);
    embed(fixture, far.id, &direction(fixture, 0, 3.0).await).await;
    embed(fixture, close.id, &direction(fixture, 0, 0.1).await).await;
    embed(fixture, closest.id, &direction(fixture, 0, 0.0).await).await;
    embed(fixture, orthogonal.id, &direction(fixture, 10, 0.0).await).await;

    let query = direction(fixture, 0, 0.0).await;
    let nearest = fixture.index().nearest(&query, 10).await.unwrap();
    let order: Vec<MarketId> = nearest.iter().map(|hit| hit.id).collect();
    assert_eq!(order, [closest.id, close.id, far.id, orthogonal.id]);
    assert!((nearest[0].score - 1.0).abs() < 1e-4, "{nearest:?}");
    assert!(
        nearest
            .windows(2)
            .all(|pair| pair[0].score >= pair[1].score)
    );
    assert!(nearest.iter().all(|hit| (0.0..=1.0).contains(&hit.score)));
    assert!(nearest[3].score.abs() < 1e-4, "orthogonal scores 0");
    let expected = 1.0 / 10.0_f32.sqrt();
    assert!((nearest[2].score - expected).abs() < 1e-3, "{nearest:?}");
}

/// At most `limit` markets come back, the closest ones.
pub async fn nearest_returns_at_most_the_limit<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "m", 5).await;
    for (n, market) in created.iter().enumerate() {
        embed(fixture, market.id, &direction(fixture, 0, n as f32).await).await;
    }
    let query = direction(fixture, 0, 0.0).await;
    let nearest = fixture.index().nearest(&query, 2).await.unwrap();
    let order: Vec<MarketId> = nearest.iter().map(|hit| hit.id).collect();
    assert_eq!(order, [created[0].id, created[1].id]);
}

/// Deleted markets are never found, and markets that were never embedded are not either.
pub async fn nearest_skips_deleted_and_unembedded_markets<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "m", 3).await;
    let (kept, deleted, unembedded) = (&created[0], &created[1], &created[2]);
    embed(fixture, kept.id, &direction(fixture, 0, 0.5).await).await;
    embed(fixture, deleted.id, &direction(fixture, 0, 0.0).await).await;
    assert!(
        fixture
            .markets()
            .delete(deleted.id, None, None)
            .await
            .unwrap()
    );
    let query = direction(fixture, 0, 0.0).await;
    let nearest = fixture.index().nearest(&query, 10).await.unwrap();
    let found: Vec<MarketId> = nearest.iter().map(|hit| hit.id).collect();
    assert_eq!(found, [kept.id], "unembedded {}", unembedded.id);
}
