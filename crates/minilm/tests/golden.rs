//! Our embeddings are the reference's: the golden vectors in `golden/golden.json` were made by
//! `golden/make.py` with the numpy reference of the sentence-transformers recipe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use markets_contract_tests::embedding::cosine;
use markets_domain::search::{Embedding, EmbeddingProvider};
use markets_minilm::{DIMENSIONS, MiniLmEmbedder, MiniLmSettings};
use serde::Deserialize;

/// How close each of our embeddings must be to the reference's (cosine similarity).
const MIN_COSINE: f64 = 0.999;

#[derive(Deserialize)]
struct Golden {
    text: String,
    embedding: Vec<f32>,
}

fn golden() -> Vec<Golden> {
    serde_json::from_str(include_str!("golden/golden.json")).unwrap()
}

fn assert_matches(ours: &[Embedding], golden: &[Golden]) {
    assert_eq!(ours.len(), golden.len());
    for (ours, golden) in ours.iter().zip(golden) {
        assert_eq!(ours.dimensions(), DIMENSIONS);
        let similarity = cosine(ours, &Embedding::new(golden.embedding.clone()).unwrap());
        assert!(
            similarity >= MIN_COSINE,
            "{:?}: cosine {similarity} to the reference",
            golden.text
        );
    }
}

/// Each text embedded on its own matches its golden vector.
#[tokio::test]
async fn each_text_alone_matches_the_reference() {
    let golden = golden();
    assert!(golden.len() >= 30);
    let embedder = support::embedder();
    for case in &golden {
        let ours = embedder
            .embed(std::slice::from_ref(&case.text))
            .await
            .unwrap();
        assert_matches(&ours, std::slice::from_ref(case));
    }
}

/// All texts in one padded batch (long and short together) still match: padding is masked out
/// of attention and pooling.
#[tokio::test]
async fn a_padded_batch_matches_the_reference() {
    let golden = golden();
    let texts: Vec<String> = golden.iter().map(|case| case.text.clone()).collect();
    let settings = MiniLmSettings {
        batch_size: texts.len().try_into().unwrap(),
        ..MiniLmSettings::new(support::model_dir())
    };
    let ours = MiniLmEmbedder::load(&settings)
        .unwrap()
        .embed(&texts)
        .await
        .unwrap();
    assert_matches(&ours, &golden);
}

/// The published figure for the model: "A man is eating food." and "A man is eating a piece of
/// bread." are at cosine 0.7553.
#[tokio::test]
async fn the_published_pair_is_at_0_7553() {
    let texts = ["A man is eating food.", "A man is eating a piece of bread."].map(String::from);
    let pair = support::embedder().embed(&texts).await.unwrap();
    assert!((cosine(&pair[0], &pair[1]) - 0.7553).abs() < 5e-4);
}
