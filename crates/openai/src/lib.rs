//! OpenAI-compatible embeddings API adapter for the
//! [`EmbeddingProvider`](markets_domain::search::EmbeddingProvider) port.
//!
//! - `POST {base_url}/embeddings` with `{"model", "input": [texts], "dimensions"}` and a bearer
//!   key: OpenAI itself or any server speaking its API.
//! - Big inputs are split into requests of at most `max_batch_size` texts, sent one after
//!   another; the results are put back in input order (by each item's `index`) and checked:
//!   one per text, each of the configured dimensions.
//! - Each request has a timeout. Transient failures (timeouts, connection errors, 408, 429,
//!   5xx) are retried with exponential backoff and jitter, honouring `Retry-After` up to the
//!   policy's longest wait; other 4xx fail at once as
//!   [`Rejected`](markets_domain::search::EmbeddingError::Rejected), with the provider's message.
//! - The API key is never logged nor put in an error; neither are the texts.
#![deny(missing_docs)]

mod embedder;
mod retry;
mod settings;
mod wire;

pub use embedder::{OpenAiEmbedder, SetupError};
pub use settings::{OPENAI_BASE_URL, OpenAiSettings, RetryPolicy};
