//! In-process adapters that need no external service: they keep the app working (and its tests
//! hermetic) where a real backend is not configured.
//!
//! - [`HashingEmbedder`]: a deterministic, *lexical* [`EmbeddingProvider`] for when no embeddings
//!   API is configured. It makes texts that share words and spellings close, which is enough for
//!   search to work offline and in tests, but it knows nothing of meaning.
//! - [`MokaCache`]: the [`Cache`] port in memory (moka), bounded, with the Redis adapter's TTL,
//!   version and removal rules, for a single instance without Redis.
//! - [`LocalRateLimiter`]: per-process rate limits, the fallback of the shared Redis limiter.
//! - [`SingleFlight`]: a [`MarketRepository`] decorator, over any store, that makes concurrent
//!   reads of one market share one query.
//!
//! [`EmbeddingProvider`]: markets_domain::search::EmbeddingProvider
//! [`Cache`]: markets_domain::cache::Cache
//! [`MarketRepository`]: markets_domain::market::MarketRepository
#![deny(missing_docs)]

mod cache;
mod hashing;
mod ratelimit;
mod single_flight;

pub use cache::{MokaCache, MokaCacheSettings};
pub use hashing::{DEFAULT_DIMENSIONS, HashingEmbedder};
pub use ratelimit::LocalRateLimiter;
pub use single_flight::SingleFlight;
