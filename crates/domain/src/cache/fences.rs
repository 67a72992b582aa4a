//! Fences: what an instance knows of committed changes, so that a cache that missed an
//! invalidation cannot serve the entry it replaced.
//!
//! Redis may fail a write-through or a removal (it stalled, restarted from an old snapshot, or
//! is cut off from the writing instance only) after the database committed the change. The
//! database therefore publishes every change and deletion (a [`ChangeFeed`]); each instance
//! keeps the newest one per market in a [`FenceBook`] for a window longer than any cache entry
//! can live (its own writes are recorded there at once, too), and [`FencedCache`] treats an
//! older cached copy as a miss. While an instance cannot
//! be sure its book is complete (its feed is behind), it serves no cache hits at all. A writer
//! whose own cache update failed waits out the feed's propagation bound before it answers, so
//! that every instance has heard of the change before the client can ask again.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{Cache, CacheError};
use crate::market::{Market, MarketId};

/// The newest committed state of a market, as far as caches are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// A change committed this version; cached copies of older versions are stale.
    Version(u64),
    /// The market was deleted; every cached copy is stale.
    Deleted,
}

impl Fence {
    /// Whether a cached copy of `market` is at least as new as this fence.
    fn admits(self, market: &Market) -> bool {
        match self {
            Self::Version(version) => market.version >= version,
            Self::Deleted => false,
        }
    }

    /// The later of two fences of one market: a deletion is final.
    fn max(self, other: Self) -> Self {
        match (self, other) {
            (Self::Version(a), Self::Version(b)) => Self::Version(a.max(b)),
            _ => Self::Deleted,
        }
    }
}

/// How an instance hears of changes committed by every instance.
#[async_trait]
pub trait ChangeFeed: Send + Sync + std::fmt::Debug + 'static {
    /// Whether every change committed more than the propagation bound ago is in this
    /// instance's book, so that its cache hits can be trusted.
    fn is_current(&self) -> bool;

    /// Returns once a change committed before the call has reached every instance that still
    /// serves cache hits (the propagation bound has passed).
    async fn settle(&self);
}

forward_through_arc!(ChangeFeed {
    async fn settle(&self) -> ();
    fn is_current(&self) -> bool;
});

/// A feed for a single process, whose book holds every change it makes (the service reports
/// each one): always current, and nothing to wait for. Right where one process owns the
/// database (SQLite).
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnChanges;

#[async_trait]
impl ChangeFeed for OwnChanges {
    fn is_current(&self) -> bool {
        true
    }

    async fn settle(&self) {}
}

/// A fence and the instant it may be forgotten.
#[derive(Debug, Clone, Copy)]
struct Entry {
    fence: Fence,
    until: Instant,
}

/// The fences of one instance, each kept for `window` after its change committed: longer than a
/// cache entry written before the change can live (its TTL, plus a slack for the time between a
/// read and its write-back and for clock skew). Over `capacity` fences, the book admits no
/// cached copy at all until expired ones are pruned: it refuses rather than forgets.
#[derive(Debug)]
pub struct FenceBook {
    window: Duration,
    capacity: usize,
    fences: RwLock<HashMap<MarketId, Entry>>,
}

impl FenceBook {
    /// A book keeping fences for `window`, at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            fences: RwLock::new(HashMap::new()),
        }
    }

    /// How long a fence is kept after its change committed.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records `fence` for `id`, for a change committed `age` ago; an older fence never
    /// replaces a newer one.
    pub fn record(&self, id: MarketId, fence: Fence, age: Duration) {
        let Some(remaining) = self.window.checked_sub(age) else {
            return;
        };
        let until = Instant::now() + remaining;
        let mut fences = self.fences.write().unwrap_or_else(PoisonError::into_inner);
        let entry = fences.entry(id).or_insert(Entry { fence, until });
        entry.fence = entry.fence.max(fence);
        entry.until = entry.until.max(until);
    }

    /// Whether a cached copy of `market` may be served: no newer change or deletion is known,
    /// and the book is within its capacity.
    pub fn admits(&self, market: &Market) -> bool {
        let fences = self.fences.read().unwrap_or_else(PoisonError::into_inner);
        if fences.len() > self.capacity {
            return false;
        }
        fences
            .get(&market.id)
            .is_none_or(|entry| entry.fence.admits(market))
    }

    /// Forgets the fences whose window has passed.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut fences = self.fences.write().unwrap_or_else(PoisonError::into_inner);
        fences.retain(|_, entry| entry.until > now);
    }

    /// How many fences are held.
    pub fn len(&self) -> usize {
        self.fences
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no fence is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`Cache`] whose hits are checked against the instance's fences: a copy older than a
/// known change, or any copy while the feed is behind, is a miss.
#[derive(Debug, Clone)]
pub struct FencedCache<C, F> {
    inner: C,
    book: std::sync::Arc<FenceBook>,
    feed: F,
}

impl<C: Cache, F: ChangeFeed> FencedCache<C, F> {
    /// `inner`, checked against `book`, which `feed` keeps up to date.
    pub fn new(inner: C, book: std::sync::Arc<FenceBook>, feed: F) -> Self {
        Self { inner, book, feed }
    }
}

#[async_trait]
impl<C: Cache, F: ChangeFeed> Cache for FencedCache<C, F> {
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError> {
        if !self.feed.is_current() {
            return Ok(None);
        }
        let cached = self.inner.get(id).await?;
        Ok(cached.filter(|market| self.book.admits(market)))
    }

    async fn put(&self, markets: &[Market]) -> Result<(), CacheError> {
        self.inner.put(markets).await
    }

    async fn remove(&self, id: MarketId) -> Result<(), CacheError> {
        self.inner.remove(id).await
    }

    /// While the feed is behind, the book may lack another instance's recent change, so a read
    /// shared with one that started before it cannot be told apart: none is admitted, and the
    /// service reads again on its own (reads go to the database during the outage anyway).
    fn admits(&self, market: &Market) -> bool {
        self.feed.is_current() && self.book.admits(market)
    }

    async fn committed(&self, id: MarketId, fence: Fence, taken: bool) {
        self.book.record(id, fence, Duration::ZERO);
        if !taken {
            self.feed.settle().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::{Creator, Description, MarketName, MarketStatus, Volume};
    use crate::user::{DisplayName, UserId};

    fn market(id: MarketId, version: u64) -> Market {
        let now = chrono::Utc::now();
        Market {
            id,
            name: MarketName::parse("Rain?").unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
            creator: Creator {
                id: UserId::new(),
                display_name: DisplayName::parse("Ann").unwrap(),
            },
            created_at: now,
            updated_at: now,
            version,
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_fence_refuses_older_copies_and_admits_its_own_version_and_newer() {
        let book = FenceBook::new(HOUR, 10);
        let id = MarketId::new();
        book.record(id, Fence::Version(3), Duration::ZERO);
        assert!(!book.admits(&market(id, 2)));
        assert!(book.admits(&market(id, 3)));
        assert!(book.admits(&market(id, 4)));
        assert!(book.admits(&market(MarketId::new(), 1)), "other markets");
    }

    #[test]
    fn fences_only_move_forward_and_a_deletion_is_final() {
        let book = FenceBook::new(HOUR, 10);
        let id = MarketId::new();
        book.record(id, Fence::Version(5), Duration::ZERO);
        book.record(id, Fence::Version(2), Duration::ZERO);
        assert!(!book.admits(&market(id, 4)), "a late, older fence won");
        book.record(id, Fence::Deleted, Duration::ZERO);
        book.record(id, Fence::Version(9), Duration::ZERO);
        assert!(!book.admits(&market(id, 9)), "a deleted market came back");
    }

    #[test]
    fn fences_older_than_the_window_are_not_kept() {
        let book = FenceBook::new(Duration::from_secs(60), 10);
        let id = MarketId::new();
        book.record(id, Fence::Deleted, Duration::from_secs(61));
        assert!(book.is_empty());
        book.record(id, Fence::Deleted, Duration::from_secs(59));
        assert_eq!(book.len(), 1);
        let expired = FenceBook::new(Duration::ZERO, 10);
        expired.record(id, Fence::Deleted, Duration::ZERO);
        expired.prune();
        assert!(expired.is_empty());
    }

    /// A feed that has lost its connection.
    #[derive(Debug)]
    struct Behind;

    #[async_trait]
    impl ChangeFeed for Behind {
        fn is_current(&self) -> bool {
            false
        }

        async fn settle(&self) {}
    }

    #[test]
    fn a_cache_whose_feed_is_behind_admits_no_shared_read() {
        let book = std::sync::Arc::new(FenceBook::new(HOUR, 10));
        let read = market(MarketId::new(), 1);
        let current = FencedCache::new(crate::cache::NoCache, book.clone(), OwnChanges);
        assert!(current.admits(&read));
        let behind = FencedCache::new(crate::cache::NoCache, book, Behind);
        assert!(
            !behind.admits(&read),
            "a change it has not heard of may be newer"
        );
    }

    #[test]
    fn a_book_over_capacity_admits_nothing() {
        let book = FenceBook::new(HOUR, 2);
        for _ in 0..3 {
            book.record(MarketId::new(), Fence::Deleted, Duration::ZERO);
        }
        assert!(!book.admits(&market(MarketId::new(), 1)));
    }
}
