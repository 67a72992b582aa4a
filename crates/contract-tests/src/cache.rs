//! The contract of [`Cache`]: misses and hits, versions that only move forward, removals that
//! refuse stale write-backs, and batches.

use chrono::Utc;
use markets_domain::cache::Cache;
use markets_domain::market::{
    Creator, Description, Market, MarketId, MarketName, MarketStatus, Volume,
};
use markets_domain::user::{DisplayName, UserId};

/// A fresh, empty cache.
pub trait CacheFixture: Send + Sync + 'static {
    /// The cache under test.
    type Cache: Cache;

    /// The cache.
    fn cache(&self) -> &Self::Cache;
}

/// Generates one `#[test]` per cache contract case, each on a fixture from `$make`.
#[macro_export]
macro_rules! cache_contract {
    ($make:expr) => {
        $crate::__contract_cases!(cache, $make;
            a_put_turns_a_miss_into_a_hit,
            only_newer_versions_replace_an_entry,
            a_removal_refuses_stale_write_backs,
            one_put_stores_many_markets,
            unknown_markets_miss,
        );
    };
}

/// A market as a cache would hold it, at `version`.
pub fn market(id: MarketId, version: u64, name: &str) -> Market {
    let now = Utc::now();
    Market {
        id,
        name: MarketName::parse(name).unwrap(),
        description: Description::parse("A | description, with \"quotes\".").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::parse("1234.56").unwrap(),
        creator: Creator {
            id: UserId::new(),
            display_name: DisplayName::parse("Ann").unwrap(),
        },
        created_at: now,
        updated_at: now,
        version,
    }
}

/// `get` misses until `put`, then returns the market exactly.
pub async fn a_put_turns_a_miss_into_a_hit<F: CacheFixture>(fixture: &F) {
    let cache = fixture.cache();
    let market = market(MarketId::new(), 1, "first");
    assert_eq!(cache.get(market.id).await.unwrap(), None);
    cache.put(std::slice::from_ref(&market)).await.unwrap();
    assert_eq!(cache.get(market.id).await.unwrap(), Some(market));
}

/// A put of an older (or the same) version leaves the newer entry in place.
pub async fn only_newer_versions_replace_an_entry<F: CacheFixture>(fixture: &F) {
    let cache = fixture.cache();
    let id = MarketId::new();
    let (v1, v2, v3) = (
        market(id, 1, "one"),
        market(id, 2, "two"),
        market(id, 3, "three"),
    );
    cache.put(std::slice::from_ref(&v2)).await.unwrap();
    cache.put(std::slice::from_ref(&v1)).await.unwrap();
    assert_eq!(
        cache.get(id).await.unwrap(),
        Some(v2.clone()),
        "older version won"
    );
    let same_version = market(id, 2, "impostor");
    cache.put(&[same_version]).await.unwrap();
    assert_eq!(
        cache.get(id).await.unwrap(),
        Some(v2),
        "same version replaced"
    );
    cache.put(std::slice::from_ref(&v3)).await.unwrap();
    assert_eq!(cache.get(id).await.unwrap(), Some(v3));
}

/// After a removal the market misses, and writing back any version changes nothing.
pub async fn a_removal_refuses_stale_write_backs<F: CacheFixture>(fixture: &F) {
    let cache = fixture.cache();
    let id = MarketId::new();
    cache.put(&[market(id, 1, "doomed")]).await.unwrap();
    cache.remove(id).await.unwrap();
    assert_eq!(cache.get(id).await.unwrap(), None);
    cache.put(&[market(id, 1, "stale")]).await.unwrap();
    cache.put(&[market(id, 9, "late")]).await.unwrap();
    assert_eq!(
        cache.get(id).await.unwrap(),
        None,
        "removed market came back"
    );
}

/// One put can store many markets, each subject to its own version check.
pub async fn one_put_stores_many_markets<F: CacheFixture>(fixture: &F) {
    let cache = fixture.cache();
    let held = market(MarketId::new(), 5, "held");
    cache.put(std::slice::from_ref(&held)).await.unwrap();
    let mut batch: Vec<Market> = (0..25)
        .map(|n| market(MarketId::new(), 1, &format!("m{n}")))
        .collect();
    batch.push(market(held.id, 4, "older"));
    cache.put(&batch).await.unwrap();
    for market in &batch[..25] {
        assert_eq!(cache.get(market.id).await.unwrap().as_ref(), Some(market));
    }
    assert_eq!(cache.get(held.id).await.unwrap(), Some(held));
    cache.put(&[]).await.unwrap();
}

/// Unknown ids miss; removing one is not an error.
pub async fn unknown_markets_miss<F: CacheFixture>(fixture: &F) {
    let cache = fixture.cache();
    let id = MarketId::new();
    assert_eq!(cache.get(id).await.unwrap(), None);
    cache.remove(id).await.unwrap();
}
