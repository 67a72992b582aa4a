//! In-process adapters that need no external service: they keep the app working (and its tests
//! hermetic) where a real backend is not configured.
//!
//! - [`HashingEmbedder`]: a deterministic, *lexical* [`EmbeddingProvider`] for when no embeddings
//!   API is configured. It makes texts that share words and spellings close, which is enough for
//!   search to work offline and in tests, but it knows nothing of meaning.
//!
//! [`EmbeddingProvider`]: markets_domain::search::EmbeddingProvider
#![deny(missing_docs)]

mod hash;
mod hashing;
mod ratelimit;
mod tokens;

pub use hashing::{DEFAULT_DIMENSIONS, HashingEmbedder};
pub use ratelimit::LocalRateLimiter;
