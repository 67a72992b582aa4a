//! The cache port in front of the market repository.
//!
//! Entries are versioned by [`Market::version`]: a write never replaces a newer entry with an
//! older one, and a removal leaves a marker that refuses every write-back for a while. That
//! closes the race where a reader misses, reads the old row, and writes it back after an update
//! or a delete has already refreshed or removed the entry. [`fences`] close the rest: a change
//! that the cache itself missed.

pub mod fences;

use async_trait::async_trait;

use crate::error::BoxError;
use crate::market::{Market, MarketId};
pub use fences::{ChangeFeed, Fence, FenceBook, FencedCache, OwnChanges};

/// The cache failed (unreachable, timed out). Callers treat this as a miss and carry on: a cache
/// outage must never fail a request.
#[derive(Debug, thiserror::Error)]
#[error("cache is currently unavailable")]
pub struct CacheError(#[source] pub BoxError);

/// Whether a read was answered by the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the cache.
    Hit,
    /// From the repository (the cache missed, or was unavailable).
    Miss,
}

impl CacheStatus {
    /// `HIT` or `MISS`, as sent in `X-Cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
        }
    }
}

/// Caches whole markets by id, with a time-to-live chosen by the adapter.
/// Implementations must pass `markets_contract_tests`' cache suite.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug + 'static {
    /// The cached market, or `None` on a miss (an unreadable or removed entry is a miss too).
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError>;

    /// Stores `markets` in one round trip, each unless the cache holds the same or a newer
    /// version of it, or it was removed within the removal guard.
    async fn put(&self, markets: &[Market]) -> Result<(), CacheError>;

    /// Removes the market's entry and, for the guard period, refuses writes of any version.
    async fn remove(&self, id: MarketId) -> Result<(), CacheError>;

    /// Called after every committed change (or deletion) of `id`, before the use case answers;
    /// `taken` says whether this cache was updated with it. A shared cache records `fence` and,
    /// when the change was not taken, returns only once no instance can serve the copy it
    /// replaced (see [`FencedCache`]). The default does nothing, which is right only for a
    /// cache in the writing process whose updates cannot fail.
    async fn committed(&self, id: MarketId, fence: Fence, taken: bool) {
        let _ = (id, fence, taken);
    }

    /// Whether `market`, just read from the repository, is as new as every change this cache
    /// has heard of: a read shared with one that started before another instance's commit may
    /// not be. The default knows of none.
    fn admits(&self, market: &Market) -> bool {
        let _ = market;
        true
    }
}

forward_through_arc!(Cache {
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError>;
    async fn put(&self, markets: &[Market]) -> Result<(), CacheError>;
    async fn remove(&self, id: MarketId) -> Result<(), CacheError>;
    async fn committed(&self, id: MarketId, fence: Fence, taken: bool) -> ();
    fn admits(&self, market: &Market) -> bool;
});

/// No cache at all: every read misses. For deployments and tests without one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    async fn get(&self, _: MarketId) -> Result<Option<Market>, CacheError> {
        Ok(None)
    }

    async fn put(&self, _: &[Market]) -> Result<(), CacheError> {
        Ok(())
    }

    async fn remove(&self, _: MarketId) -> Result<(), CacheError> {
        Ok(())
    }
}
