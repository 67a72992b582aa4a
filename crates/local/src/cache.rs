//! [`MokaCache`]: the [`Cache`] port in this process's memory, for single-instance deployments
//! and as a near cache: no network hop, same rules as the Redis adapter.

use async_trait::async_trait;
use markets_domain::cache::{Cache, CacheError};
use markets_domain::market::{Market, MarketId};
use moka::ops::compute::Op;
use std::sync::Arc;
use std::time::Duration;

/// How long entries and removal markers live, and how many the cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MokaCacheSettings {
    /// How long an entry or a removal marker lives after its last write (the Redis adapter's
    /// `ttl`, from the same `cache.ttl_secs`).
    pub ttl: Duration,
    /// The most entries (markets and removal markers) held; the least useful are evicted first.
    pub max_entries: u64,
}

impl Default for MokaCacheSettings {
    /// Five minutes, as `cache.ttl_secs` defaults to, and 100,000 entries: a few hundred MB at
    /// most for markets of the largest allowed size, far less for typical ones.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_entries: 100_000,
        }
    }
}

/// What a key holds: a market at its version, or the marker a removal leaves so that a late
/// write-back of the deleted market is refused until the marker expires.
#[derive(Debug, Clone)]
enum Slot {
    Entry(Arc<Market>),
    Removed,
}

/// Markets cached in memory with a time-to-live and a bounded size. Cheap to clone: clones
/// share entries.
///
/// Writes are compare-and-set per market (moka's `and_compute_with` serialises writers of one
/// key), so an older version never replaces a newer one, exactly as the Redis script does. A
/// removal marker takes a slot like any entry: under memory pressure it may be evicted before
/// its TTL, as a Redis marker may be under `maxmemory`.
#[derive(Debug, Clone)]
pub struct MokaCache {
    entries: moka::future::Cache<MarketId, Slot>,
}

impl Default for MokaCache {
    fn default() -> Self {
        Self::new(MokaCacheSettings::default())
    }
}

impl MokaCache {
    /// An empty cache with `settings`.
    pub fn new(settings: MokaCacheSettings) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .name("markets")
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl)
                .build(),
        }
    }

    /// How many entries (markets and removal markers) are held, after pending evictions and
    /// expiries are applied; for metrics and tests.
    pub async fn len(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    /// Whether nothing is held.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    async fn put_one(&self, market: &Market) {
        self.entries
            .entry(market.id)
            .and_compute_with(|held| {
                let keep = match held.as_ref().map(|entry| entry.value()) {
                    Some(Slot::Removed) => true,
                    Some(Slot::Entry(held)) => held.version >= market.version,
                    None => false,
                };
                let op = if keep {
                    Op::Nop
                } else {
                    Op::Put(Slot::Entry(Arc::new(market.clone())))
                };
                std::future::ready(op)
            })
            .await;
    }
}

#[async_trait]
impl Cache for MokaCache {
    async fn get(&self, id: MarketId) -> Result<Option<Market>, CacheError> {
        Ok(match self.entries.get(&id).await {
            Some(Slot::Entry(market)) => Some(Market::clone(&market)),
            Some(Slot::Removed) | None => None,
        })
    }

    async fn put(&self, markets: &[Market]) -> Result<(), CacheError> {
        for market in markets {
            self.put_one(market).await;
        }
        Ok(())
    }

    async fn remove(&self, id: MarketId) -> Result<(), CacheError> {
        self.entries.insert(id, Slot::Removed).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markets_contract_tests::cache::market;
    use std::time::Instant;

    /// Polls `condition` until it holds or five seconds pass; expiry in moka is driven by its
    /// own clock, so there is nothing to wait on but the outcome.
    async fn eventually(condition: impl AsyncFn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if condition().await {
                return true;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    fn short_lived(max_entries: u64) -> MokaCache {
        MokaCache::new(MokaCacheSettings {
            ttl: Duration::from_millis(50),
            max_entries,
        })
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = short_lived(100);
        let market = market(MarketId::new(), 1, "brief");
        cache.put(std::slice::from_ref(&market)).await.unwrap();
        assert!(
            eventually(async || cache.get(market.id).await.unwrap().is_none()).await,
            "entry outlived its TTL"
        );
    }

    #[tokio::test]
    async fn a_removal_marker_expires_too_and_then_writes_are_accepted() {
        let cache = short_lived(100);
        let id = MarketId::new();
        cache.remove(id).await.unwrap();
        let back = market(id, 2, "recreated");
        let accepted = eventually(async || {
            cache.put(std::slice::from_ref(&back)).await.unwrap();
            cache.get(id).await.unwrap().is_some()
        })
        .await;
        assert!(accepted, "removal marker outlived its TTL");
    }

    #[tokio::test]
    async fn the_number_of_entries_is_bounded() {
        let cache = MokaCache::new(MokaCacheSettings {
            ttl: Duration::from_secs(60),
            max_entries: 10,
        });
        let markets: Vec<Market> = (0..200)
            .map(|n| market(MarketId::new(), 1, &format!("m{n}")))
            .collect();
        cache.put(&markets).await.unwrap();
        assert!(cache.len().await <= 10, "held {}", cache.len().await);
        assert!(!cache.is_empty().await);
    }
}
