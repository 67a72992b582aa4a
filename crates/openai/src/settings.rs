//! What the adapter needs to know: where the API is, how to call it, how hard to retry.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

/// OpenAI's own API root.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// How to reach an OpenAI-compatible embeddings API and how to use it.
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// The API root, to which `/embeddings` is appended (with or without a trailing slash):
    /// `https://api.openai.com/v1` for OpenAI.
    pub base_url: Url,
    /// Sent as `Authorization: Bearer <key>`; never logged.
    pub api_key: SecretString,
    /// The embedding model, e.g. `text-embedding-3-small`.
    pub model: String,
    /// Asked of the API (`dimensions`) and checked on every embedding it returns. Must match the
    /// vector column. Models without the parameter (`text-embedding-ada-002`) refuse it.
    pub dimensions: usize,
    /// The most one HTTP request may take, connecting included, before it counts as a
    /// (retryable) failure.
    pub request_timeout: Duration,
    /// The most texts sent in one request; bigger inputs take several requests.
    pub max_batch_size: usize,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl OpenAiSettings {
    /// The API at `base_url` ([`OPENAI_BASE_URL`] for OpenAI's) with `text-embedding-3-small` at
    /// 1536 dimensions, a 20 s request timeout, batches of up to 256 texts and the default
    /// [`RetryPolicy`].
    pub fn new(base_url: Url, api_key: SecretString) -> Self {
        Self {
            base_url,
            api_key,
            model: "text-embedding-3-small".to_owned(),
            dimensions: 1536,
            request_timeout: Duration::from_secs(20),
            max_batch_size: 256,
            retry: RetryPolicy::default(),
        }
    }
}

/// How transient failures are retried: exponential backoff with jitter.
///
/// The wait before retry `n` (0 for the first) is drawn at random from
/// `[min_delay × 2ⁿ, min_delay × 2ⁿ⁺¹)` and never exceeds `max_delay`. A `Retry-After` (or
/// `retry-after-ms`) from the server lengthens the wait to at least what it asks, still capped
/// at `max_delay`: a call's total time stays bounded by about
/// `max_attempts × request_timeout + (max_attempts − 1) × max_delay`, even if a retry then
/// comes sooner than the server asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (1 means no retries).
    pub max_attempts: u32,
    /// The shortest wait, before the first retry.
    pub min_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts; waits of 0.5–1 s, 1–2 s and 2–4 s; never more than 8 s (`Retry-After`).
    fn default() -> Self {
        Self {
            max_attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}
