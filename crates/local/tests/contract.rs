//! The hashing embedder keeps the embedding provider contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{EmbeddingFixture, embedding_contract};
use markets_local::HashingEmbedder;

struct Fixture(HashingEmbedder);

impl EmbeddingFixture for Fixture {
    type Provider = HashingEmbedder;

    fn provider(&self) -> &HashingEmbedder {
        &self.0
    }
}

async fn fixture() -> Fixture {
    Fixture(HashingEmbedder::default())
}

embedding_contract!(fixture());
