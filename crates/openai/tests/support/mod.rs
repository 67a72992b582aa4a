//! A local stand-in for the embeddings API (wiremock) and settings pointing at it.

use std::time::Duration;

use markets_openai::{OpenAiSettings, RetryPolicy};
use serde_json::{Value, json};
use url::Url;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

/// The key the fake API expects.
pub const KEY: &str = "sk-test-0123456789";

/// Settings for the API at `server` (under `/v1`) with short timeouts and waits.
pub fn settings(server: &MockServer, dimensions: usize) -> OpenAiSettings {
    let base_url = Url::parse(&format!("{}/v1", server.uri())).unwrap();
    OpenAiSettings {
        model: "text-embedding-3-small".to_owned(),
        dimensions,
        request_timeout: Duration::from_secs(2),
        max_batch_size: 256,
        retry: RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        },
        ..OpenAiSettings::new(base_url, KEY.into())
    }
}

/// A deterministic stand-in for a model: a vector derived from the text's bytes alone.
pub fn fake_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    (0..dimensions)
        .map(|component| {
            // FNV-1a over the component number and the text, mapped to -1.0..1.0.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in (component as u64)
                .to_le_bytes()
                .iter()
                .chain(text.as_bytes())
            {
                h = (h ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Answers like the real API: one embedding per `input` text, of the requested `dimensions`,
/// listed in reverse so that clients must sort by `index`.
#[derive(Debug, Clone, Copy)]
pub struct FakeEmbeddings;

impl Respond for FakeEmbeddings {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let dimensions = body["dimensions"].as_u64().unwrap() as usize;
        let input = body["input"].as_array().unwrap();
        let data: Vec<Value> = input
            .iter()
            .enumerate()
            .rev()
            .map(|(index, text)| {
                json!({
                    "object": "embedding",
                    "index": index,
                    "embedding": fake_embedding(text.as_str().unwrap(), dimensions),
                })
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }))
    }
}
