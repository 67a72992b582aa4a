//! The model keeps the embedding provider contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use markets_contract_tests::{EmbeddingFixture, embedding_contract};
use markets_minilm::MiniLmEmbedder;

struct Fixture(MiniLmEmbedder);

impl EmbeddingFixture for Fixture {
    type Provider = MiniLmEmbedder;

    fn provider(&self) -> &MiniLmEmbedder {
        &self.0
    }
}

async fn fixture() -> Fixture {
    Fixture(support::embedder())
}

embedding_contract!(fixture());
