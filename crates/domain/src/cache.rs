//! The cache port in front of the market repository.

use async_trait::async_trait;

use crate::error::BoxError;
use crate::market::{Market, MarketId};

/// The cache failed (unreachable, timed out). Callers treat this as a miss and carry on: a cache
/// outage must never fail a request.
#[derive(Debug, thiserror::Error)]
#[error("cache is currently unavailable")]
pub struct CacheError(#[source] pub BoxError);

/// Caches whole markets by id. Entries expire after a time-to-live chosen by the adapter.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The cached market, or `None` on a miss (an unreadable entry is a miss too).
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError>;

    /// Stores `markets`, replacing any entries they have, in as few round trips as possible.
    async fn put(&self, markets: &[Market]) -> Result<(), CacheError>;

    /// Removes the entry for `id`, so that no later read returns the old value.
    async fn invalidate(&self, id: MarketId) -> Result<(), CacheError>;
}
