//! What only a real Redis shows: stored form and TTL, round trips, unreadable entries, rate
//! limit peeks that write nothing, and outages with reconnection or the limiter's fallback,
//! each on a private `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_contract_tests::cache::market;
use markets_domain::cache::Cache;
use markets_domain::market::MarketId;
use markets_domain::ratelimit::{RateLimiter, RatePolicy};
use markets_domain::testing::BudgetLimiter;
use markets_redis::testing::PrivateRedis;
use markets_redis::{RedisCache, RedisConnection, RedisRateLimiter};
use std::time::Duration;

async fn connected(redis: &PrivateRedis) -> (RedisCache, String) {
    let settings = redis.settings();
    let cache = RedisCache::connect(&settings).unwrap();
    cache.ping().await.unwrap();
    (cache, settings.key_prefix)
}

fn calls(redis: &PrivateRedis, command: &str) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test]
async fn entries_are_namespaced_versioned_and_expire() {
    let redis = PrivateRedis::start();
    let (cache, prefix) = connected(&redis).await;
    let stored = market(MarketId::new(), 3, "stored");
    cache.put(std::slice::from_ref(&stored)).await.unwrap();
    let key = format!("{prefix}market:{}", stored.id);
    assert!(
        redis.cli(&["GET", &key]).starts_with("m1|3|{"),
        "stored form"
    );
    let ttl: u64 = redis.cli(&["TTL", &key]).trim().parse().unwrap();
    assert!((290..=300).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn many_markets_go_in_one_round_trip() {
    let redis = PrivateRedis::start();
    let (cache, _) = connected(&redis).await;
    // The first put loads the script (a NOSCRIPT reply, then SCRIPT LOAD); later ones do not.
    cache
        .put(&[market(MarketId::new(), 1, "first")])
        .await
        .unwrap();
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let markets: Vec<_> = (0..100)
        .map(|n| market(MarketId::new(), 1, &format!("m{n}")))
        .collect();
    cache.put(&markets).await.unwrap();
    let stats = redis.cli(&["INFO", "commandstats"]);
    // The script's own GETs and SETs run inside Redis; the client sent one command.
    assert_eq!(calls(&redis, "evalsha"), 1, "{stats}");
    assert!(!stats.contains("script|load"), "{stats}");
    assert!(!stats.contains("cmdstat_eval:"), "{stats}");
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "101");
}

#[tokio::test]
async fn unreadable_entries_are_misses_and_get_overwritten() {
    let redis = PrivateRedis::start();
    let (cache, prefix) = connected(&redis).await;
    let fresh = market(MarketId::new(), 1, "fresh");
    let key = format!("{prefix}market:{}", fresh.id);
    for garbage in ["m0|9|{\"old\":\"format\"}", "m1|1|{not json", "plain"] {
        redis.cli(&["SET", &key, garbage]);
        assert_eq!(cache.get(fresh.id).await.unwrap(), None, "{garbage}");
    }
    redis.cli(&["SET", &key, "m0|9|{\"old\":\"format\"}"]);
    cache.put(std::slice::from_ref(&fresh)).await.unwrap();
    assert_eq!(cache.get(fresh.id).await.unwrap(), Some(fresh));
}

#[tokio::test]
async fn an_outage_fails_fast_and_the_client_reconnects() {
    let mut redis = PrivateRedis::start();
    let (cache, _) = connected(&redis).await;
    let kept = market(MarketId::new(), 1, "kept");
    cache.put(std::slice::from_ref(&kept)).await.unwrap();

    redis.stop();
    assert!(
        cache.get(kept.id).await.is_err(),
        "a dead Redis is an error, not a hang"
    );
    assert!(cache.put(std::slice::from_ref(&kept)).await.is_err());
    assert!(cache.ping().await.is_err());

    redis.restart();
    // The client reconnects by itself; the first successful ping proves it, then the cache
    // works again (the restarted server is empty: a miss, then a hit after a put).
    let mut reconnected = false;
    for _ in 0..100 {
        if cache.ping().await.is_ok() {
            reconnected = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(reconnected, "no reconnection");
    let after = market(MarketId::new(), 1, "after");
    let mut stored = false;
    for _ in 0..50 {
        if cache.put(std::slice::from_ref(&after)).await.is_ok() {
            stored = true;
            break;
        }
        let _ = cache.ping().await;
    }
    assert!(stored, "cache did not recover");
    assert_eq!(cache.get(after.id).await.unwrap(), Some(after));
}

#[tokio::test]
async fn a_peek_writes_nothing_and_falls_back_like_a_check_while_redis_is_down() {
    let mut redis = PrivateRedis::start();
    let settings = redis.settings();
    let connection = RedisConnection::connect(&settings).unwrap();
    RedisCache::new(&connection, &settings)
        .ping()
        .await
        .unwrap();
    let fallback = BudgetLimiter::default();
    let limiter = RedisRateLimiter::new(&connection, &settings, fallback.clone());
    let policy = RatePolicy::new("login_failures", 2, Duration::from_secs(60));
    for _ in 0..3 {
        assert_eq!(limiter.peek(&policy, "ann").await.unwrap().remaining, 2);
    }
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "0", "a peek stored a key");
    limiter.check(&policy, "ann").await.unwrap();
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "1");
    assert_eq!(limiter.peek(&policy, "ann").await.unwrap().remaining, 1);

    redis.stop();
    let peeked = limiter.peek(&policy, "ann").await.unwrap();
    assert_eq!(peeked.remaining, 2, "the fallback's own count answers");
    assert_eq!(fallback.spent("login_failures", "ann"), 0, "a peek spent");
    assert!(limiter.check(&policy, "ann").await.unwrap().allowed);
    assert_eq!(fallback.spent("login_failures", "ann"), 1);
}
