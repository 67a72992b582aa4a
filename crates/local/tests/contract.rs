//! The local adapters keep their ports' contracts: the hashing embedder the embedding provider
//! contract, the moka cache the cache contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::{CacheFixture, EmbeddingFixture, cache_contract, embedding_contract};
use markets_local::{HashingEmbedder, MokaCache};

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

struct CacheOnly(MokaCache);

impl CacheFixture for CacheOnly {
    type Cache = MokaCache;

    fn cache(&self) -> &MokaCache {
        &self.0
    }
}

mod cache {
    use super::*;

    async fn fixture() -> CacheOnly {
        CacheOnly(MokaCache::default())
    }

    cache_contract!(fixture());
}
