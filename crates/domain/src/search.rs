//! Semantic search ports: turning text into embeddings, and finding the nearest markets.

use async_trait::async_trait;

use crate::error::{BoxError, RepositoryError, ValidationError};
use crate::market::MarketId;

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
pub trait EmbeddingProvider: Send + Sync + 'static {
    /// How many dimensions every embedding from this provider has.
    fn dimensions(&self) -> usize;

    /// One embedding per text, in the same order, in as few calls to the backend as it allows.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError>;
}

/// A market's closeness to a query: `score` in `0.0..=1.0`, higher is closer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredMarket {
    /// The market.
    pub id: MarketId,
    /// How close it is.
    pub score: f32,
}

/// Stores market embeddings and finds the nearest ones.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// Sets (or replaces) the embedding of an existing market.
    async fn upsert(&self, id: MarketId, embedding: &Embedding) -> Result<(), RepositoryError>;

    /// Forgets a market's embedding, if it has one.
    async fn remove(&self, id: MarketId) -> Result<(), RepositoryError>;

    /// The `limit` markets closest to `query`, best first.
    async fn nearest(
        &self,
        query: &Embedding,
        limit: usize,
    ) -> Result<Vec<ScoredMarket>, RepositoryError>;
}
