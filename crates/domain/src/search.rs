//! Semantic search: the ports that turn text into embeddings, find the nearest markets and hold
//! the indexing backlog; the [`SearchService`] that answers queries with them, falling back to
//! the repository's text search; and the [`IndexService`] that keeps the index up to date.

use async_trait::async_trait;

use crate::error::{BoxError, RepositoryError, ValidationError};
use std::collections::HashMap;
use std::time::Duration;

use crate::market::{
    MarketError, MarketId, MarketRepository, ScoredSummary, SearchLimit, SearchMode, SearchQuery,
    SearchResults,
};

/// An embedding vector: finite components, never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Wraps `values`.
    ///
    /// # Errors
    /// If `values` is empty or holds a NaN or an infinity.
    pub fn new(values: Vec<f32>) -> Result<Self, ValidationError> {
        if values.is_empty() || !values.iter().all(|v| v.is_finite()) {
            return Err(ValidationError::new(
                "embedding",
                "must be a non-empty vector of finite numbers",
            ));
        }
        Ok(Self(values))
    }

    /// How many components it has.
    pub fn dimensions(&self) -> usize {
        self.0.len()
    }

    /// The components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddingError {
    /// The provider could not be reached, timed out or kept failing after retries.
    #[error("embedding provider is currently unavailable")]
    Unavailable(#[source] BoxError),
    /// The provider refused the request (bad key, bad input): retrying will not help.
    #[error("embedding provider refused the request: {0}")]
    Rejected(String),
}

/// Turns texts into embeddings (an OpenAI-compatible API, a local model, a hashing embedder).
#[async_trait]
pub trait EmbeddingProvider: Send + Sync + std::fmt::Debug + 'static {
    /// How many dimensions every embedding from this provider has.
    fn dimensions(&self) -> usize;

    /// One embedding per text, in the same order, in as few calls to the backend as it allows.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError>;
}

forward_through_arc!(EmbeddingProvider {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError>;
    fn dimensions(&self) -> usize;
});

/// A market's closeness to a query: `score` in `0.0..=1.0`, higher is closer.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ScoredMarket {
    /// The market.
    pub id: MarketId,
    /// How close it is.
    pub score: f32,
}

impl ScoredMarket {
    /// Market `id` at closeness `score`.
    pub fn new(id: MarketId, score: f32) -> Self {
        Self { id, score }
    }
}

crate::id::uuid_id!(
    /// Identifies one claim on indexing work: the markets a runner took at once, so that giving
    /// them back never ends a later claim on them.
    IndexClaim
);

/// A claimed market whose embedding is missing or stale, with the text to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexTask {
    /// The market.
    pub id: MarketId,
    /// Its version when the task was claimed: the embedding is only stored for this version.
    pub version: u64,
    /// Its name and description, as embedded.
    pub text: String,
    /// The claim that holds it.
    pub claim: IndexClaim,
}

impl IndexTask {
    /// Embed `text` for market `id` at `version`, held by `claim`.
    pub fn new(id: MarketId, version: u64, text: impl Into<String>, claim: IndexClaim) -> Self {
        Self {
            id,
            version,
            text: text.into(),
            claim,
        }
    }
}

/// How [`VectorIndex::resize`] treats the embeddings already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Only an index that stores no embedding is resized; one that does is left as it is.
    IfEmpty,
    /// Every stored embedding is dropped first, and its market marked pending.
    Discarding,
}

/// Finds the markets whose embeddings are nearest a query's: the query side of the index.
/// Implementations must pass `markets_contract_tests`' vector index suite.
#[async_trait]
pub trait VectorIndex: Send + Sync + std::fmt::Debug + 'static {
    /// How many dimensions stored embeddings have (the schema's), to check a provider against.
    async fn dimensions(&self) -> Result<usize, RepositoryError>;

    /// Makes the index store embeddings of `dimensions` components, as `mode` allows, in one
    /// transaction (concurrent callers see it done or not at all); returns the dimensions the
    /// index has afterwards: `dimensions`, unless [`Resize::IfEmpty`] found embeddings stored.
    async fn resize(&self, dimensions: usize, mode: Resize) -> Result<usize, RepositoryError>;

    /// The `limit` existing markets closest to `query`, best first.
    async fn nearest(
        &self,
        query: &Embedding,
        limit: usize,
    ) -> Result<Vec<ScoredMarket>, RepositoryError>;
}

forward_through_arc!(VectorIndex {
    async fn dimensions(&self) -> Result<usize, RepositoryError>;
    async fn resize(&self, dimensions: usize, mode: Resize) -> Result<usize, RepositoryError>;
    async fn nearest(&self, query: &Embedding, limit: usize) -> Result<Vec<ScoredMarket>, RepositoryError>;
});

/// The markets waiting for an embedding, and where embeddings are stored: the indexing side of
/// the index, apart from the query side so that a reader needs only [`VectorIndex`]. An
/// embedding belongs to one version of a market: changing the name or description marks it
/// stale until it is recomputed.
///
/// Indexing work is claimed, like jobs: a market held by one runner's claim is not handed to
/// another until that claim is stored, released or its lease runs out, so runners in any number
/// of processes never embed the same version twice while they live.
#[async_trait]
pub trait IndexBacklog: Send + Sync + std::fmt::Debug + 'static {
    /// Claims, for `lease`, up to `limit` markets whose embedding is missing or stale and that
    /// no live claim holds, oldest change first; concurrent claimers never get the same market.
    /// All the tasks of one call share one [`IndexClaim`].
    async fn claim(&self, limit: usize, lease: Duration)
    -> Result<Vec<IndexTask>, RepositoryError>;

    /// Stores each embedding for its task, all in one write, and ends their claims; returns how
    /// many were stored. One whose market has changed since the claim (it stays pending, at its
    /// new version) or is gone is not.
    async fn store(&self, embedded: &[(IndexTask, Embedding)]) -> Result<usize, RepositoryError>;

    /// Ends the claims of `tasks` without storing anything (the provider failed), so that they
    /// can be claimed again at once; a claim that has been taken over is left alone.
    async fn release(&self, tasks: &[IndexTask]) -> Result<(), RepositoryError>;

    /// Marks every market's embedding stale (for a full re-index); returns how many.
    async fn mark_all_stale(&self) -> Result<u64, RepositoryError>;

    /// How many markets are pending, claimed or not.
    async fn pending_count(&self) -> Result<u64, RepositoryError>;
}

forward_through_arc!(IndexBacklog {
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<IndexTask>, RepositoryError>;
    async fn store(&self, embedded: &[(IndexTask, Embedding)]) -> Result<usize, RepositoryError>;
    async fn release(&self, tasks: &[IndexTask]) -> Result<(), RepositoryError>;
    async fn mark_all_stale(&self) -> Result<u64, RepositoryError>;
    async fn pending_count(&self) -> Result<u64, RepositoryError>;
});

/// Answers searches semantically (embed the query, find the nearest markets, load them in one
/// batch) and falls back to the repository's text search whenever any step fails, so a search
/// only fails when the database does.
#[derive(Debug, Clone)]
pub struct SearchService<M, E, V> {
    markets: M,
    embedder: E,
    index: V,
}

/// Why the index could not be brought up to date.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The embedding provider failed.
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
    /// The index failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// The provider's embeddings do not fit the index, which already stores embeddings.
    #[error(
        "the embedding provider makes {provider} dimensions but the index stores {index}: \
         run `markets reindex` to re-embed every market with this provider"
    )]
    DimensionMismatch {
        /// The provider's.
        provider: usize,
        /// The index's.
        index: usize,
    },
}

/// Why semantic search did not answer.
#[derive(Debug, thiserror::Error)]
enum SemanticError {
    #[error("embedding the query failed")]
    Embedding(#[from] EmbeddingError),
    #[error("the vector index failed")]
    Index(#[from] RepositoryError),
    #[error("the provider returned no embedding")]
    NoEmbedding,
}

impl<M: MarketRepository, E: EmbeddingProvider, V: VectorIndex> SearchService<M, E, V> {
    /// Builds the service on its ports.
    pub fn new(markets: M, embedder: E, index: V) -> Self {
        Self {
            markets,
            embedder,
            index,
        }
    }

    /// Fits the index to the provider's embeddings; call it at start-up. An index that stores
    /// no embedding yet takes the provider's dimensions, so a fresh database works with any
    /// provider; one that stores embeddings of another size is left alone.
    ///
    /// # Errors
    /// [`IndexError::DimensionMismatch`] if the stored embeddings are of another size, or the
    /// index's own failure.
    pub async fn fit_dimensions(&self) -> Result<(), IndexError> {
        let provider = self.embedder.dimensions();
        let index = self.index.resize(provider, Resize::IfEmpty).await?;
        if provider == index {
            Ok(())
        } else {
            Err(IndexError::DimensionMismatch { provider, index })
        }
    }

    /// Switches the index to the provider's dimensions if they differ, dropping every stored
    /// embedding (their markets are then pending); returns whether it did. For `markets
    /// reindex`, which then re-embeds everything.
    ///
    /// # Errors
    /// The index's failure.
    pub async fn adopt_dimensions(&self) -> Result<bool, IndexError> {
        let provider = self.embedder.dimensions();
        if self.index.dimensions().await? == provider {
            return Ok(false);
        }
        self.index.resize(provider, Resize::Discarding).await?;
        Ok(true)
    }

    /// Markets matching `query`, best first.
    pub async fn search(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<SearchResults, MarketError> {
        match self.semantic(query, limit).await {
            Ok(hits) => Ok(SearchResults {
                hits,
                mode: SearchMode::Semantic,
                fallback_cause: None,
                embedding_failed: false,
            }),
            Err(cause) => Ok(SearchResults {
                hits: self.markets.search_text(query, limit).await?,
                mode: SearchMode::Fallback,
                fallback_cause: Some(crate::error::report(&cause)),
                embedding_failed: !matches!(cause, SemanticError::Index(_)),
            }),
        }
    }

    async fn semantic(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, SemanticError> {
        let embedding = self
            .embedder
            .embed(&[query.as_str().to_owned()])
            .await?
            .pop()
            .ok_or(SemanticError::NoEmbedding)?;
        let nearest = self.index.nearest(&embedding, limit.get() as usize).await?;
        let ids: Vec<MarketId> = nearest.iter().map(|scored| scored.id).collect();
        let mut markets: HashMap<MarketId, _> = self
            .markets
            .find_by_ids(&ids)
            .await?
            .into_iter()
            .map(|market| (market.id, market))
            .collect();
        // In the index's order; a market deleted meanwhile is simply left out, and so is one
        // with nothing in common with the query (score 0).
        Ok(nearest
            .into_iter()
            .filter(|scored| scored.score > 0.0)
            .filter_map(|scored| {
                let market = markets.remove(&scored.id)?;
                Some(ScoredSummary {
                    market: market.into(),
                    score: scored.score.clamp(0.0, 1.0),
                })
            })
            .collect())
    }
}

/// How much indexing work one run claims, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexPacing {
    /// Markets claimed, embedded (in one provider call) and stored (in one write) per run.
    pub batch: usize,
    /// How long a run's claim lasts: longer than a run can take (the provider's timeout and
    /// retries included), since a market whose claim runs out may be embedded again.
    pub lease: Duration,
}

impl Default for IndexPacing {
    fn default() -> Self {
        Self {
            batch: 64,
            lease: Duration::from_secs(120),
        }
    }
}

/// Keeps the index up to date: claims pending markets from the backlog, embeds each claimed
/// batch with one provider call and stores it with one write. Every runner (jobs, the
/// background sweep, `reindex`) goes through [`IndexService::index_pending`], so none repeats
/// another's work.
#[derive(Debug, Clone)]
pub struct IndexService<E, B> {
    embedder: E,
    backlog: B,
    pacing: IndexPacing,
}

impl<E: EmbeddingProvider, B: IndexBacklog> IndexService<E, B> {
    /// Builds the service on its ports.
    pub fn new(embedder: E, backlog: B, pacing: IndexPacing) -> Self {
        Self {
            embedder,
            backlog,
            pacing,
        }
    }

    /// Claims up to a batch of pending markets no other runner holds, embeds them in one
    /// provider call and stores the embeddings in one write; returns how many it embedded
    /// (0 when nothing was left to claim).
    ///
    /// # Errors
    /// If the provider or the index fails. After a provider failure the claim is given back, so
    /// a later call (here or elsewhere) retries at once; after a failed write it runs out with
    /// its lease.
    pub async fn index_pending(&self) -> Result<usize, IndexError> {
        let tasks = self
            .backlog
            .claim(self.pacing.batch, self.pacing.lease)
            .await?;
        if tasks.is_empty() {
            return Ok(0);
        }
        let texts: Vec<String> = tasks.iter().map(|task| task.text.clone()).collect();
        let embeddings = match self.embed(&texts).await {
            Ok(embeddings) => embeddings,
            Err(error) => {
                // Best effort: unreleased, the claim still ends with its lease.
                let _ = self.backlog.release(&tasks).await;
                return Err(error);
            }
        };
        let embedded: Vec<(IndexTask, Embedding)> = tasks.into_iter().zip(embeddings).collect();
        self.backlog.store(&embedded).await?;
        Ok(embedded.len())
    }

    /// One embedding per text, or an error: a provider that answers with fewer is unavailable.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, IndexError> {
        let embeddings = self.embedder.embed(texts).await?;
        if embeddings.len() == texts.len() {
            Ok(embeddings)
        } else {
            Err(IndexError::Embedding(EmbeddingError::Unavailable(
                format!(
                    "the provider returned {} embeddings for {} texts",
                    embeddings.len(),
                    texts.len()
                )
                .into(),
            )))
        }
    }

    /// Marks every market for re-embedding; `index_pending` then works through them.
    pub async fn reindex_all(&self) -> Result<u64, IndexError> {
        Ok(self.backlog.mark_all_stale().await?)
    }

    /// How many markets wait for an embedding.
    pub async fn pending(&self) -> Result<u64, IndexError> {
        Ok(self.backlog.pending_count().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PasswordHash;
    use crate::market::{
        Description, MarketDraft, MarketName, MarketService, MarketStatus, Volume,
    };
    use crate::permission::{Actor, Role};
    use crate::testing::{InMemoryCache, InMemoryStore};
    use crate::user::{DisplayName, Email, NewUser, UserId, UserRepository};
    use futures_executor::block_on;

    #[derive(Debug)]
    struct Provider(Option<Vec<f32>>);

    #[async_trait]
    impl EmbeddingProvider for Provider {
        fn dimensions(&self) -> usize {
            3
        }

        async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
            match &self.0 {
                Some(values) => Ok(texts
                    .iter()
                    .map(|_| Embedding::new(values.clone()).unwrap())
                    .collect()),
                None => Err(EmbeddingError::Unavailable("provider down".into())),
            }
        }
    }

    #[derive(Debug)]
    struct Index(Vec<ScoredMarket>);

    #[async_trait]
    impl VectorIndex for Index {
        async fn dimensions(&self) -> Result<usize, RepositoryError> {
            Ok(4)
        }

        /// As if it stored embeddings of 4 dimensions: never resized.
        async fn resize(&self, _: usize, _: Resize) -> Result<usize, RepositoryError> {
            Ok(4)
        }

        async fn nearest(
            &self,
            _: &Embedding,
            _: usize,
        ) -> Result<Vec<ScoredMarket>, RepositoryError> {
            Ok(self.0.clone())
        }
    }

    fn store_with(name: &str) -> (InMemoryStore, MarketId) {
        let store = InMemoryStore::new();
        let user = block_on(UserRepository::create(
            &store,
            NewUser {
                id: UserId::new(),
                email: Email::parse("ann@example.com").unwrap(),
                display_name: DisplayName::parse("Ann").unwrap(),
                password_hash: PasswordHash::new("x"),
                role: Role::User,
                email_verified: true,
            },
        ))
        .unwrap();
        let markets = MarketService::new(store.clone(), InMemoryCache::default());
        let actor = Actor::User {
            id: user.id,
            role: Role::User,
        };
        let draft = MarketDraft {
            name: MarketName::parse(name).unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
        };
        let id = block_on(markets.create(&actor, draft)).unwrap().id;
        (store, id)
    }

    fn query(text: &str) -> SearchQuery {
        SearchQuery::parse(text).unwrap()
    }

    #[test]
    fn a_failing_provider_falls_back_to_text_search() {
        let (store, id) = store_with("Will it rain");
        let search = SearchService::new(store, Provider(None), Index(Vec::new()));
        let results = block_on(search.search(&query("rain"), SearchLimit::DEFAULT)).unwrap();
        assert_eq!(results.mode, SearchMode::Fallback);
        assert_eq!(results.hits.len(), 1);
        assert_eq!(results.hits[0].market.id, id);
        assert!(results.fallback_cause.unwrap().contains("provider down"));
    }

    #[test]
    fn semantic_hits_follow_the_index_and_skip_deleted_markets() {
        let (store, id) = store_with("Anything");
        let gone = ScoredMarket {
            id: MarketId::new(),
            score: 0.9,
        };
        let here = ScoredMarket { id, score: 1.5 };
        let search = SearchService::new(
            store,
            Provider(Some(vec![1.0, 0.0, 0.0])),
            Index(vec![gone, here]),
        );
        let results = block_on(search.search(&query("whatever"), SearchLimit::DEFAULT)).unwrap();
        assert_eq!(results.mode, SearchMode::Semantic);
        assert_eq!(results.hits.len(), 1);
        assert_eq!(results.hits[0].market.id, id);
        assert_eq!(results.hits[0].score, 1.0, "clamped to 0..=1");
    }

    #[test]
    fn embeddings_of_another_size_are_a_mismatch() {
        let (store, _) = store_with("x");
        let search = SearchService::new(store, Provider(None), Index(Vec::new()));
        let mismatch = block_on(search.fit_dimensions()).unwrap_err();
        assert!(matches!(
            mismatch,
            IndexError::DimensionMismatch {
                provider: 3,
                index: 4
            }
        ));
    }
}
