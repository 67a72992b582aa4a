//! The contract of [`EmbeddingProvider`]: one embedding per text, in order, of the advertised
//! dimensions, for batches of any size (none included).
//!
//! Real providers are not bit-for-bit deterministic (floating point on shared hardware), so
//! "the same" embedding means equal up to a small tolerance, and order is checked by each
//! text's embedding being closest to that same text's embedding made on its own.

use markets_domain::search::{Embedding, EmbeddingProvider};

/// A provider ready to embed.
pub trait EmbeddingFixture: Send + Sync + 'static {
    /// The provider under test.
    type Provider: EmbeddingProvider;

    /// The provider.
    fn provider(&self) -> &Self::Provider;
}

/// Generates one `#[test]` per embedding provider contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of an [`EmbeddingFixture`]).
#[macro_export]
macro_rules! embedding_contract {
    ($make:expr) => {
        $crate::__contract_cases!(embedding, $make;
            one_embedding_per_text_in_order,
            embeddings_have_the_advertised_dimensions,
            no_texts_give_no_embeddings,
            the_same_text_twice_embeds_alike,
            large_batches_keep_count_and_order,
        );
    };
}

/// How far apart two embeddings of the same text may be (cosine distance).
const SAME_TEXT_TOLERANCE: f64 = 1e-3;

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &Embedding, b: &Embedding) -> f64 {
    let (a, b) = (a.as_slice(), b.as_slice());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let norms = norm(a) * norm(b);
    if norms == 0.0 { 0.0 } else { dot / norms }
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|&text| text.to_owned()).collect()
}

async fn embed<F: EmbeddingFixture>(fixture: &F, texts: &[String]) -> Vec<Embedding> {
    let embeddings = fixture.provider().embed(texts).await.unwrap();
    assert_eq!(embeddings.len(), texts.len(), "not one embedding per text");
    embeddings
}

/// Asserts that `batch[i]` is, among all of `batch`, the closest to `alone` (text `i` embedded
/// on its own), and practically equal to it.
fn assert_in_place(batch: &[Embedding], i: usize, alone: &Embedding) {
    let closest = (0..batch.len())
        .max_by(|&x, &y| cosine(&batch[x], alone).total_cmp(&cosine(&batch[y], alone)))
        .unwrap();
    let similarity = cosine(&batch[i], alone);
    assert!(
        closest == i || cosine(&batch[closest], alone) <= similarity,
        "embedding of text {i} is at position {closest}: outputs out of order"
    );
    assert!(
        similarity >= 1.0 - SAME_TEXT_TOLERANCE,
        "text {i} embedded alone differs from its embedding in a batch (cosine {similarity})"
    );
}

/// Distinct texts come back one embedding each, in the order given.
pub async fn one_embedding_per_text_in_order<F: EmbeddingFixture>(fixture: &F) {
    let texts = strings(&[
        "Will it rain in Paris tomorrow?",
        "Bitcoin above $100k by the end of the year",
        "Who wins the Super Bowl?",
        "Élection présidentielle 2027 : qui au second tour ?",
        "Will the Fed cut interest rates in June?",
    ]);
    let batch = embed(fixture, &texts).await;
    for (i, text) in texts.iter().enumerate() {
        let alone = embed(fixture, std::slice::from_ref(text)).await;
        assert_in_place(&batch, i, &alone[0]);
    }
}

/// Every embedding has exactly [`EmbeddingProvider::dimensions`] components.
pub async fn embeddings_have_the_advertised_dimensions<F: EmbeddingFixture>(fixture: &F) {
    let dimensions = fixture.provider().dimensions();
    assert!(
        dimensions > 0,
        "a provider advertises at least one dimension"
    );
    let texts = strings(&[
        "short",
        "a somewhat longer text about markets and prices",
        "42",
    ]);
    for embedding in embed(fixture, &texts).await {
        assert_eq!(embedding.dimensions(), dimensions);
    }
}

/// An empty batch gives an empty result, and is not an error.
pub async fn no_texts_give_no_embeddings<F: EmbeddingFixture>(fixture: &F) {
    assert!(embed(fixture, &[]).await.is_empty());
}

/// One text twice in a batch gives the same embedding twice, and a different text a different
/// one.
pub async fn the_same_text_twice_embeds_alike<F: EmbeddingFixture>(fixture: &F) {
    let texts = strings(&[
        "Will it rain in Paris tomorrow?",
        "Who wins the Super Bowl?",
        "Will it rain in Paris tomorrow?",
    ]);
    let batch = embed(fixture, &texts).await;
    let same = cosine(&batch[0], &batch[2]);
    assert!(
        same >= 1.0 - SAME_TEXT_TOLERANCE,
        "the same text embedded differently (cosine {same})"
    );
    assert!(
        cosine(&batch[0], &batch[1]) < same,
        "different texts embedded as closely as the same text"
    );
}

/// A batch bigger than providers usually send in one request (300 texts) comes back whole and
/// in order, however the provider splits it.
pub async fn large_batches_keep_count_and_order<F: EmbeddingFixture>(fixture: &F) {
    let texts: Vec<String> = (0..300)
        .map(|n| format!("market number {n}: will {} happen?", n * 7919 % 1000))
        .collect();
    let batch = embed(fixture, &texts).await;
    let dimensions = fixture.provider().dimensions();
    assert!(batch.iter().all(|e| e.dimensions() == dimensions));
    for i in [0, 1, 99, 150, 255, 256, 298, 299] {
        let alone = embed(fixture, std::slice::from_ref(&texts[i])).await;
        assert_in_place(&batch, i, &alone[0]);
    }
}
