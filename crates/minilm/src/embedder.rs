//! [`MiniLmEmbedder`]: the model behind the embedding port, on the blocking pool, with a cache
//! of recent embeddings in front.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use markets_domain::search::{Embedding, EmbeddingError, EmbeddingProvider};
use moka::future::Cache;
use tokio::sync::Semaphore;

use crate::error::{InferenceError, LoadError};
use crate::model::{DIMENSIONS, Model};

/// Where the model is and how hard to run it.
#[derive(Debug, Clone)]
pub struct MiniLmSettings {
    /// The unpacked model (`model.safetensors`, `tokenizer.json`, `config.json`, ...).
    pub model_dir: PathBuf,
    /// Forward passes running at once. Each already spreads its matrix products over every
    /// core, so more than a couple only queues work in memory.
    pub max_concurrency: NonZeroUsize,
    /// Texts per forward pass: a batch is padded to its longest text, and attention costs grow
    /// with batch × length², so a large input is embedded in slices of this many.
    pub batch_size: NonZeroUsize,
    /// Embeddings of recent texts kept (about 1.5 kB each), so a repeated query skips the model.
    pub cache_entries: u64,
}

impl MiniLmSettings {
    /// Defaults for everything but the directory: 2 passes at once, 32 texts per pass, 4096
    /// cached embeddings (about 6 MB).
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            max_concurrency: NonZeroUsize::MIN.saturating_add(1),
            batch_size: NonZeroUsize::MIN.saturating_add(31),
            cache_entries: 4096,
        }
    }
}

/// all-MiniLM-L6-v2 as an [`EmbeddingProvider`] of [`DIMENSIONS`] dimensions: semantic,
/// in process, on the CPU. Cheap to clone (the model is shared).
///
/// Embeddings are those of sentence-transformers for this model (texts truncated to 256
/// tokens), up to floating-point rounding.
#[derive(Debug, Clone)]
pub struct MiniLmEmbedder {
    model: Arc<Model>,
    permits: Arc<Semaphore>,
    batch_size: usize,
    cache: Cache<String, Embedding>,
}

impl MiniLmEmbedder {
    /// Loads the model from `settings.model_dir` (about 90 MB of weights, read once).
    ///
    /// # Errors
    /// If a file of the model is missing, unreadable or not what this adapter runs.
    pub fn load(settings: &MiniLmSettings) -> Result<Self, LoadError> {
        Ok(Self {
            model: Arc::new(Model::load(&settings.model_dir)?),
            permits: Arc::new(Semaphore::new(settings.max_concurrency.get())),
            batch_size: settings.batch_size.get(),
            cache: Cache::new(settings.cache_entries),
        })
    }

    /// Runs one forward pass over `texts` on the blocking pool, once a permit is free.
    async fn run(&self, texts: Vec<String>) -> Result<Vec<Embedding>, InferenceError> {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            unreachable!("the semaphore is never closed")
        };
        let model = Arc::clone(&self.model);
        let vectors = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            model.embed(&texts)
        })
        .await??;
        Ok(vectors
            .into_iter()
            .map(Embedding::new)
            .collect::<Result<_, _>>()?)
    }

    /// Embeds the texts the cache does not hold, in slices of `batch_size`, and caches them.
    async fn embed_missing(&self, texts: Vec<String>) -> Result<Vec<Embedding>, InferenceError> {
        let mut embeddings = Vec::with_capacity(texts.len());
        for slice in texts.chunks(self.batch_size) {
            let embedded = self.run(slice.to_vec()).await?;
            for (text, embedding) in slice.iter().zip(&embedded) {
                self.cache.insert(text.clone(), embedding.clone()).await;
            }
            embeddings.extend(embedded);
        }
        Ok(embeddings)
    }
}

#[async_trait]
impl EmbeddingProvider for MiniLmEmbedder {
    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    /// Texts seen recently come from the cache; the others go through the model together.
    /// Fails with `Unavailable` only if the model itself breaks: no text is refused (longer
    /// ones are truncated).
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        let mut found = Vec::with_capacity(texts.len());
        let mut missing = Vec::new();
        for text in texts {
            let cached = self.cache.get(text).await;
            if cached.is_none() {
                missing.push(text.clone());
            }
            found.push(cached);
        }
        let mut embedded = self
            .embed_missing(missing)
            .await
            .map_err(|error| EmbeddingError::Unavailable(Box::new(error)))?
            .into_iter();
        Ok(found
            .into_iter()
            .filter_map(|cached| cached.or_else(|| embedded.next()))
            .collect())
    }
}
