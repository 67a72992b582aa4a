//! The contract of [`VectorIndex`] and [`IndexBacklog`]: which markets wait for an embedding,
//! claims on them that concurrent runners never share, embeddings stored (a batch at a time)
//! only for the version they were computed from, and nearest neighbours by cosine similarity
//! among the markets that still exist.
//!
//! Cases that only look at what is pending claim with a zero lease, which ends at once.
//!
//! Markets are created and changed through the fixture's [`MarketRepository`], since an index
//! learns of changes from the market store it sits beside.
//!
//! [`MarketRepository`]: markets_domain::market::MarketRepository

use async_trait::async_trait;
use markets_domain::market::{
    Market, MarketId, MarketName, MarketPatch, MarketRepository, MarketStatus, Volume,
};
use markets_domain::search::{
    Embedding, EmbeddingError, EmbeddingProvider, IndexBacklog, IndexPacing, IndexService,
    IndexTask, Resize, ScoredMarket, VectorIndex,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::RepositoryFixture;
use crate::repository::{market, user};

/// A vector index over fresh, empty storage, with the repositories that write that storage.
pub trait VectorIndexFixture: RepositoryFixture {
    /// The index under test, over the same markets as [`RepositoryFixture::Markets`]; clones
    /// share its storage (several runners index through clones at once).
    type Index: VectorIndex + IndexBacklog + Clone;

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
            claimed_markets_go_to_no_other_claim_until_stored_or_released,
            a_claim_whose_lease_ran_out_can_be_taken_over,
            a_market_changed_while_claimed_is_claimable_at_its_new_version_after_the_store,
            a_batch_is_stored_at_once_keeping_only_current_versions,
            concurrent_runners_embed_every_market_once_in_full_batches,
            a_failed_embedding_gives_the_claim_back_at_once,
            an_index_without_embeddings_takes_any_dimensions,
            resizing_with_embeddings_stored_changes_nothing,
            resizing_discarding_drops_every_embedding,
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

/// A unit vector of `dimensions` components along the first axis.
fn first_axis(dimensions: usize) -> Embedding {
    let mut values = vec![0.0; dimensions];
    values[0] = 1.0;
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

/// Long enough never to run out during a case.
const LEASE: Duration = Duration::from_secs(600);

/// How long a case waits for a zero lease to be over.
const PATIENCE: Duration = Duration::from_secs(10);

/// The pending tasks, oldest change first, under a claim that ends at once.
async fn peek<F: VectorIndexFixture>(fixture: &F) -> Vec<IndexTask> {
    fixture.index().claim(1000, Duration::ZERO).await.unwrap()
}

fn ids_of(tasks: &[IndexTask]) -> Vec<MarketId> {
    tasks.iter().map(|task| task.id).collect()
}

fn ids_of_hits(hits: &[ScoredMarket]) -> Vec<MarketId> {
    hits.iter().map(|hit| hit.id).collect()
}

async fn pending_ids<F: VectorIndexFixture>(fixture: &F) -> Vec<MarketId> {
    ids_of(&peek(fixture).await)
}

/// The pending task of market `id`, which must be pending.
async fn task<F: VectorIndexFixture>(fixture: &F, id: MarketId) -> IndexTask {
    peek(fixture)
        .await
        .into_iter()
        .find(|task| task.id == id)
        .unwrap_or_else(|| panic!("market {id} is not pending"))
}

/// Stores `embedding` for market `id`'s pending task.
async fn embed<F: VectorIndexFixture>(fixture: &F, id: MarketId, embedding: &Embedding) {
    let task = task(fixture, id).await;
    let stored = fixture.index().store(&[(task, embedding.clone())]).await;
    assert_eq!(
        stored.unwrap(),
        1,
        "embedding of the current version refused"
    );
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
    let first_two = fixture.index().claim(2, Duration::ZERO).await.unwrap();
    assert_eq!(ids_of(&first_two), [ids[1], ids[2]]);
}

/// An embedding computed before a rename is refused, and the market stays pending at its new
/// version.
pub async fn an_embedding_for_an_older_version_is_not_stored<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "Rain", 1).await.remove(0);
    let stale = task(fixture, created.id).await;
    let renamed = rename(fixture, &created, "Snow").await;
    let embedding = direction(fixture, 0, 0.0).await;
    assert_eq!(
        fixture
            .index()
            .store(&[(stale, embedding.clone())])
            .await
            .unwrap(),
        0,
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
    assert_eq!(
        fixture.index().store(&[(task, embedding)]).await.unwrap(),
        0
    );
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

/// Claimed markets go to no other claim (and count as pending) until their claim stores or
/// releases them; a released claim's markets are claimable at once, and releasing a claim that
/// was taken over leaves the newer claim alone.
pub async fn claimed_markets_go_to_no_other_claim_until_stored_or_released<
    F: VectorIndexFixture,
>(
    fixture: &F,
) {
    let created = markets(fixture, "m", 3).await;
    let ids: Vec<MarketId> = created.iter().map(|market| market.id).collect();
    let index = fixture.index();
    let first = index.claim(2, LEASE).await.unwrap();
    assert_eq!(ids_of(&first), ids[..2], "the oldest two");
    assert!(first.iter().all(|task| task.claim == first[0].claim));
    let second = index.claim(10, LEASE).await.unwrap();
    assert_eq!(ids_of(&second), ids[2..], "only the one not held");
    assert_ne!(second[0].claim, first[0].claim, "each claim is its own");
    assert!(index.claim(10, LEASE).await.unwrap().is_empty(), "all held");
    assert_eq!(
        index.pending_count().await.unwrap(),
        3,
        "claimed is pending"
    );

    index.release(&first).await.unwrap();
    let again = index.claim(10, LEASE).await.unwrap();
    assert_eq!(ids_of(&again), ids[..2], "released at once");
    index.release(&first).await.unwrap();
    let stolen = index.claim(10, LEASE).await.unwrap();
    assert!(
        stolen.is_empty(),
        "a stale release freed a newer claim: {stolen:?}"
    );

    let embedding = direction(fixture, 0, 0.0).await;
    let batch: Vec<(IndexTask, Embedding)> = again
        .into_iter()
        .map(|task| (task, embedding.clone()))
        .collect();
    assert_eq!(index.store(&batch).await.unwrap(), 2);
    assert_eq!(index.pending_count().await.unwrap(), 1);
    index.release(&[]).await.unwrap();
}

/// A claim whose lease ran out is no longer a claim: another runner takes the markets over.
pub async fn a_claim_whose_lease_ran_out_can_be_taken_over<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "m", 1).await.remove(0);
    let index = fixture.index();
    let lapsed = index.claim(10, Duration::ZERO).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let taken = loop {
        let taken = index.claim(10, LEASE).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        assert!(Instant::now() < deadline, "the claim never ran out");
        crate::__private::tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(ids_of(&taken), [created.id]);
    index.release(&lapsed).await.unwrap();
    assert!(
        index.claim(10, LEASE).await.unwrap().is_empty(),
        "the lapsed claim's release freed the one that took over"
    );
}

/// A market renamed while claimed stays with its claim; the claim's store refuses its old
/// embedding and ends the claim, and the market is then claimable at its new version.
pub async fn a_market_changed_while_claimed_is_claimable_at_its_new_version_after_the_store<
    F: VectorIndexFixture,
>(
    fixture: &F,
) {
    let created = markets(fixture, "Rain", 1).await.remove(0);
    let index = fixture.index();
    let claimed = index.claim(10, LEASE).await.unwrap();
    let renamed = rename(fixture, &created, "Snow").await;
    assert!(
        index.claim(10, LEASE).await.unwrap().is_empty(),
        "still held"
    );
    let embedding = direction(fixture, 0, 0.0).await;
    let old = (claimed[0].clone(), embedding);
    assert_eq!(index.store(&[old]).await.unwrap(), 0);
    let fresh = index.claim(10, LEASE).await.unwrap();
    assert_eq!(ids_of(&fresh), [created.id]);
    assert_eq!(fresh[0].version, renamed.version);
    assert!(fresh[0].text.contains("Snow"), "{:?}", fresh[0].text);
}

/// A batch stores the embeddings of the markets still at their claimed version, each with its
/// own vector, and says how many; the others (changed or deleted since) are not stored.
pub async fn a_batch_is_stored_at_once_keeping_only_current_versions<F: VectorIndexFixture>(
    fixture: &F,
) {
    let created = markets(fixture, "m", 4).await;
    let index = fixture.index();
    let claimed = index.claim(10, LEASE).await.unwrap();
    rename(fixture, &created[1], "renamed").await;
    assert!(
        fixture
            .markets()
            .delete(created[2].id, None, None)
            .await
            .unwrap()
    );
    let mut batch = Vec::new();
    for (axis, task) in claimed.into_iter().enumerate() {
        batch.push((task, direction(fixture, 2 * axis, 0.0).await));
    }
    assert_eq!(
        index.store(&batch).await.unwrap(),
        2,
        "the first and the last"
    );
    assert_eq!(pending_ids(fixture).await, [created[1].id]);
    for (axis, market) in [(0, &created[0]), (3, &created[3])] {
        let query = direction(fixture, 2 * axis, 0.0).await;
        let nearest = index.nearest(&query, 1).await.unwrap();
        assert_eq!(nearest[0].id, market.id, "its own vector");
        assert!(nearest[0].score > 0.99, "{nearest:?}");
    }
}

/// An embedder that records every text it is given, and takes its time (yielding), so that
/// runners overlap.
#[derive(Debug)]
struct CountingEmbedder {
    dimensions: usize,
    calls: AtomicUsize,
    texts: Mutex<Vec<String>>,
    fail: bool,
}

impl CountingEmbedder {
    fn new(dimensions: usize, fail: bool) -> Arc<Self> {
        Arc::new(Self {
            dimensions,
            calls: AtomicUsize::new(0),
            texts: Mutex::default(),
            fail,
        })
    }
}

#[async_trait]
impl EmbeddingProvider for CountingEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.lock().unwrap().extend(texts.iter().cloned());
        for _ in 0..3 {
            crate::__private::tokio::task::yield_now().await;
        }
        if self.fail {
            return Err(EmbeddingError::Unavailable("provider down".into()));
        }
        let mut unit = vec![0.0; self.dimensions];
        unit[0] = 1.0;
        Ok(texts
            .iter()
            .map(|_| Embedding::new(unit.clone()).unwrap())
            .collect())
    }
}

/// Four runners at once (as jobs, the sweep and other instances run), each indexing until it
/// finds nothing to claim, embed every market exactly once, in full batches: one provider call
/// per batch of markets, ceil(markets / batch) calls in all.
pub async fn concurrent_runners_embed_every_market_once_in_full_batches<F: VectorIndexFixture>(
    fixture: &F,
) {
    const MARKETS: usize = 40;
    const BATCH: usize = 8;
    markets(fixture, "market number ", MARKETS).await;
    let dimensions = fixture.index().dimensions().await.unwrap();
    let embedder = CountingEmbedder::new(dimensions, false);
    let pacing = IndexPacing {
        batch: BATCH,
        lease: LEASE,
    };
    let service = IndexService::new(embedder.clone(), fixture.index().clone(), pacing);
    let runner = || async { while service.index_pending().await.unwrap() > 0 {} };
    crate::__private::tokio::join!(runner(), runner(), runner(), runner());

    let texts = embedder.texts.lock().unwrap().clone();
    let distinct: HashSet<&String> = texts.iter().collect();
    assert_eq!(texts.len(), MARKETS, "texts embedded: {texts:?}");
    assert_eq!(distinct.len(), MARKETS, "a market embedded twice");
    let calls = embedder.calls.load(Ordering::SeqCst);
    assert_eq!(calls, MARKETS.div_ceil(BATCH), "provider calls");
    assert_eq!(fixture.index().pending_count().await.unwrap(), 0);
}

/// A run whose provider fails gives its claim back: the markets are claimable at once, not
/// after the lease.
pub async fn a_failed_embedding_gives_the_claim_back_at_once<F: VectorIndexFixture>(fixture: &F) {
    let created = markets(fixture, "m", 2).await;
    let dimensions = fixture.index().dimensions().await.unwrap();
    let embedder = CountingEmbedder::new(dimensions, true);
    let pacing = IndexPacing {
        batch: 10,
        lease: LEASE,
    };
    let service = IndexService::new(embedder, fixture.index().clone(), pacing);
    assert!(service.index_pending().await.is_err());
    let claimed = fixture.index().claim(10, LEASE).await.unwrap();
    let ids: Vec<MarketId> = created.iter().map(|market| market.id).collect();
    assert_eq!(ids_of(&claimed), ids);
}

/// An index storing no embedding (markets or not) takes the dimensions asked for, and then
/// stores and finds embeddings of that size.
pub async fn an_index_without_embeddings_takes_any_dimensions<F: VectorIndexFixture>(fixture: &F) {
    let index = fixture.index();
    let created = markets(fixture, "m", 1).await.remove(0);
    for dimensions in [24, 384, 1536] {
        assert_eq!(
            index.resize(dimensions, Resize::IfEmpty).await.unwrap(),
            dimensions
        );
        assert_eq!(index.dimensions().await.unwrap(), dimensions);
    }
    assert_eq!(index.resize(24, Resize::IfEmpty).await.unwrap(), 24);
    embed(fixture, created.id, &first_axis(24)).await;
    let nearest = index.nearest(&first_axis(24), 1).await.unwrap();
    assert_eq!(ids_of_hits(&nearest), [created.id]);
}

/// With embeddings stored, resizing only if empty leaves the index (and them) as they are.
pub async fn resizing_with_embeddings_stored_changes_nothing<F: VectorIndexFixture>(fixture: &F) {
    let index = fixture.index();
    index.resize(24, Resize::IfEmpty).await.unwrap();
    let created = markets(fixture, "m", 1).await.remove(0);
    embed(fixture, created.id, &first_axis(24)).await;
    assert_eq!(index.resize(32, Resize::IfEmpty).await.unwrap(), 24);
    assert_eq!(index.dimensions().await.unwrap(), 24);
    assert_eq!(index.pending_count().await.unwrap(), 0);
    let nearest = index.nearest(&first_axis(24), 1).await.unwrap();
    assert_eq!(ids_of_hits(&nearest), [created.id]);
}

/// Resizing while discarding drops every stored embedding, leaves every market pending and
/// takes the new size, whatever was stored.
pub async fn resizing_discarding_drops_every_embedding<F: VectorIndexFixture>(fixture: &F) {
    let index = fixture.index();
    index.resize(24, Resize::IfEmpty).await.unwrap();
    let created = markets(fixture, "m", 2).await;
    for market in &created {
        embed(fixture, market.id, &first_axis(24)).await;
    }
    assert_eq!(index.resize(32, Resize::Discarding).await.unwrap(), 32);
    assert_eq!(index.dimensions().await.unwrap(), 32);
    assert_eq!(index.pending_count().await.unwrap(), 2);
    assert!(index.nearest(&first_axis(32), 10).await.unwrap().is_empty());
    embed(fixture, created[1].id, &first_axis(32)).await;
    let nearest = index.nearest(&first_axis(32), 10).await.unwrap();
    assert_eq!(ids_of_hits(&nearest), [created[1].id]);
}
