//! The OpenAI adapter keeps the embedding provider contract, against a local fake of the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use markets_contract_tests::{EmbeddingFixture, embedding_contract};
use markets_openai::OpenAiEmbedder;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

struct Fixture {
    embedder: OpenAiEmbedder,
    // Kept alive for as long as the embedder calls it.
    _server: MockServer,
}

impl EmbeddingFixture for Fixture {
    type Provider = OpenAiEmbedder;

    fn provider(&self) -> &OpenAiEmbedder {
        &self.embedder
    }
}

async fn fixture() -> Fixture {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {}", support::KEY)))
        .respond_with(support::FakeEmbeddings)
        .mount(&server)
        .await;
    let settings = markets_openai::OpenAiSettings {
        // Small, so the large-batch case takes several requests.
        max_batch_size: 100,
        ..support::settings(&server, 64)
    };
    Fixture {
        embedder: OpenAiEmbedder::new(settings).unwrap(),
        _server: server,
    }
}

embedding_contract!(fixture());
