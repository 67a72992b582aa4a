//! [`HashingEmbedder`]: embeddings from hashed words and character trigrams. Its two steps
//! live beside it and serve nothing else: `tokens` turns text into features, `hash` hashes
//! them stably.

mod hash;
mod tokens;

use async_trait::async_trait;
use markets_domain::ValidationError;
use markets_domain::search::{Embedding, EmbeddingError, EmbeddingProvider};

use hash::hash;
use tokens::{ngrams, words};

/// The dimensions of [`HashingEmbedder::default`]: those of the `vector(1536)` column, so its
/// embeddings can be stored where an embeddings API's would be.
pub const DEFAULT_DIMENSIONS: usize = 1536;

/// How much a whole word counts. Words outweigh trigrams because a shared word says more than a
/// shared spelling fragment; trigrams are there to catch inflections and typos
/// ("elections"/"election", "Pariss"/"Paris").
const WORD_WEIGHT: f64 = 1.0;
/// How much each character trigram counts. A word has about as many trigrams as letters, so in
/// total a word's spelling still weighs a little more than the word itself.
const NGRAM_WEIGHT: f64 = 0.25;

/// Feature namespaces, so the word "ain" and the trigram "ain" land in different buckets.
const WORD_TAG: &[u8] = b"w:";
const NGRAM_TAG: &[u8] = b"g:";

/// A deterministic embedder needing no service, model or extra crate: the "hashing trick" over
/// words and character trigrams.
///
/// **It is lexical, not semantic.** Texts are close when they share words and spellings:
/// "rain in Paris" is close to "Will it rain in Paris tomorrow?" but not to "Paris
/// precipitation", and "bank" (river) is as close to "bank" (money) as can be. Use it where no
/// embeddings API is configured (development, tests, offline), not as a stand-in for meaning.
///
/// How a text becomes a vector:
/// 1. words: lower-cased runs of letters and digits, common English stop words dropped (unless
///    the text has nothing else);
/// 2. features: each word (weight 1) and each of its character trigrams padded with boundary
///    markers (weight 0.25 each);
/// 3. each feature is hashed (FNV-1a 64 plus a finaliser: stable across Rust releases and
///    platforms) to a component (hash modulo the dimensions) and a sign (the hash's top bit), so
///    that unrelated features colliding in one component tend to cancel instead of piling up;
/// 4. the vector is scaled to unit length, so a dot product is the cosine similarity.
///
/// A text with no letters or digits at all (empty, blank, punctuation) has no features: it gets
/// the unit vector along the first component, the same for all such texts.
///
/// The same text always gives the same vector, in every process and release. Changing any of
/// the above changes the vectors: stored embeddings made by it must then be recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingEmbedder {
    dimensions: usize,
}

impl Default for HashingEmbedder {
    /// [`DEFAULT_DIMENSIONS`] dimensions.
    fn default() -> Self {
        Self {
            dimensions: DEFAULT_DIMENSIONS,
        }
    }
}

impl HashingEmbedder {
    /// An embedder making vectors of `dimensions` components. Fewer dimensions mean more
    /// collisions between unrelated features (a few hundred is already usable).
    ///
    /// # Errors
    /// If `dimensions` is 0.
    pub fn new(dimensions: usize) -> Result<Self, ValidationError> {
        if dimensions == 0 {
            return Err(ValidationError::new("dimensions", "must be at least 1"));
        }
        Ok(Self { dimensions })
    }

    /// The unit vector of one text, as described on the type.
    fn vector(&self, text: &str) -> Vec<f32> {
        let mut values = vec![0.0_f64; self.dimensions];
        for word in words(text) {
            self.add(&mut values, WORD_TAG, &word, WORD_WEIGHT);
            for ngram in ngrams(&word) {
                self.add(&mut values, NGRAM_TAG, &ngram, NGRAM_WEIGHT);
            }
        }
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            values.iter().map(|v| (v / norm) as f32).collect()
        } else {
            // No features (or, vanishingly rarely, features that cancelled out exactly).
            let mut first = vec![0.0; self.dimensions];
            first[0] = 1.0;
            first
        }
    }

    /// Adds `weight` times the feature `tag`+`feature`'s signed basis vector to `values`.
    fn add(&self, values: &mut [f64], tag: &[u8], feature: &str, weight: f64) {
        let h = hash(&[tag, feature.as_bytes()]);
        // `usize` is at most 64 bits wide, so the remainder always fits.
        let bucket = usize::try_from(h % self.dimensions as u64).unwrap_or(0);
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        values[bucket] += sign * weight;
    }
}

#[async_trait]
impl EmbeddingProvider for HashingEmbedder {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Never fails. Runs on the calling task: about a microsecond per short text.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        texts
            .iter()
            .map(|text| {
                // Cannot fail: the vector is non-empty and of unit length.
                Embedding::new(self.vector(text))
                    .map_err(|error| EmbeddingError::Unavailable(Box::new(error)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &Embedding, b: &Embedding) -> f32 {
        // Both are unit vectors.
        a.as_slice()
            .iter()
            .zip(b.as_slice())
            .map(|(x, y)| x * y)
            .sum()
    }

    async fn embed(embedder: &HashingEmbedder, texts: &[&str]) -> Vec<Embedding> {
        let texts: Vec<String> = texts.iter().map(|&text| text.to_owned()).collect();
        embedder.embed(&texts).await.unwrap()
    }

    #[tokio::test]
    async fn the_same_text_gives_the_same_vector_every_time() {
        let text = "Will the Fed cut rates in June?";
        let first = embed(&HashingEmbedder::default(), &[text]).await;
        let second = embed(&HashingEmbedder::default(), &[text, text]).await;
        assert_eq!(first[0], second[0]);
        assert_eq!(second[0], second[1]);
    }

    #[tokio::test]
    async fn vectors_have_unit_length_and_the_configured_dimensions() {
        for dimensions in [1, 7, 256, DEFAULT_DIMENSIONS] {
            let embedder = HashingEmbedder::new(dimensions).unwrap();
            assert_eq!(embedder.dimensions(), dimensions);
            let texts = [
                "rain in Paris",
                "",
                "?!",
                "a",
                "Élection présidentielle 2027",
            ];
            for embedding in embed(&embedder, &texts).await {
                assert_eq!(embedding.dimensions(), dimensions);
                let norm = cosine(&embedding, &embedding).sqrt();
                assert!((norm - 1.0).abs() < 1e-5, "norm {norm} at {dimensions}");
            }
        }
        assert_eq!(HashingEmbedder::default().dimensions(), 1536);
    }

    #[test]
    fn zero_dimensions_are_refused() {
        assert!(HashingEmbedder::new(0).is_err());
    }

    #[tokio::test]
    async fn texts_sharing_words_are_closer_than_unrelated_ones() {
        let [query, similar, unrelated, typo] = embed(
            &HashingEmbedder::default(),
            &[
                "Will it rain in Paris tomorrow",
                "rain in Paris",
                "Who wins the Super Bowl?",
                "Will it rain in Pariss tomorow",
            ],
        )
        .await
        .try_into()
        .unwrap();
        let (close, far) = (cosine(&query, &similar), cosine(&query, &unrelated));
        assert!(close > 0.5, "shared words: {close}");
        assert!(far.abs() < 0.2, "unrelated: {far}");
        // Trigrams make near-spellings close too.
        assert!(cosine(&query, &typo) > far + 0.3);
    }

    #[tokio::test]
    async fn case_punctuation_and_stop_words_do_not_matter() {
        let [a, b] = embed(
            &HashingEmbedder::default(),
            &["Will it rain in Paris?", "rain, PARIS"],
        )
        .await
        .try_into()
        .unwrap();
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn outputs_follow_the_inputs_order() {
        let embedder = HashingEmbedder::default();
        let texts = ["bitcoin above 100k", "rain in Paris", "Super Bowl winner"];
        let batch = embed(&embedder, &texts).await;
        assert_eq!(batch.len(), 3);
        for (text, embedding) in texts.iter().zip(&batch) {
            assert_eq!(&embed(&embedder, &[text]).await[0], embedding);
        }
        assert!(embed(&embedder, &[]).await.is_empty());
    }

    #[tokio::test]
    async fn texts_without_words_get_the_first_unit_vector() {
        let embedder = HashingEmbedder::new(4).unwrap();
        for embedding in embed(&embedder, &["", "   ", "?!"]).await {
            assert_eq!(embedding.as_slice(), [1.0, 0.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn vectors_never_change() {
        // Stored embeddings depend on these exact values: if this fails, everything the hashing
        // embedder ever stored must be recomputed (and this test updated on purpose).
        let vector = HashingEmbedder::new(8).unwrap().vector("Rain in Paris");
        let rounded: Vec<i32> = vector.iter().map(|v| (v * 1000.0).round() as i32).collect();
        assert_eq!(rounded, [152, 0, -610, 152, -610, 457, 0, 0]);
    }
}
