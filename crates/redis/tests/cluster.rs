//! What only a real Redis Cluster shows, each test on a private cluster of its own (three
//! masters, three replicas): a cache batch spanning many hash slots, and a master killed by PID
//! while the cache, the limiter and the revocations are in use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use async_trait::async_trait;
use chrono::Utc;
use markets_contract_tests::cache::market;
use markets_domain::auth::TokenRevocations;
use markets_domain::cache::Cache;
use markets_domain::market::MarketId;
use markets_domain::ratelimit::{RateDecision, RateLimitError, RateLimiter, RatePolicy};
use markets_domain::testing::{BudgetLimiter, InMemoryRevocations};
use markets_redis::testing::PrivateCluster;
use markets_redis::{
    RedisCache, RedisConnection, RedisRateLimiter, RedisRevocations, RedisSettings,
};
use std::time::{Duration, Instant};
use support::RecordOnly;

/// Settings for `cluster`, with a command timeout that a busy machine keeps to (the service's
/// default is 100 ms).
fn settings(cluster: &PrivateCluster) -> RedisSettings {
    let mut settings = cluster.settings();
    settings.command_timeout = Duration::from_millis(500);
    settings
}

/// A connection with `settings` once the cluster answers.
async fn connected(settings: &RedisSettings) -> RedisConnection {
    let connection = RedisConnection::connect(settings).unwrap();
    assert!(connection.is_clustered());
    let cache = RedisCache::new(&connection, settings);
    for _ in 0..100 {
        if cache.ping().await.is_ok() {
            return connection;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the private Redis Cluster does not answer");
}

/// The number of keys on node `port`.
fn keys_on(cluster: &PrivateCluster, port: u16) -> u64 {
    cluster.cli(port, &["DBSIZE"]).trim().parse().unwrap()
}

fn calls(cluster: &PrivateCluster, port: u16, command: &str) -> u64 {
    cluster
        .cli(port, &["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test]
async fn a_batch_of_markets_over_many_slots_lands_on_every_master() {
    let cluster = PrivateCluster::start();
    let settings = settings(&cluster);
    let cache = RedisCache::new(&connected(&settings).await, &settings);
    // Loads the script on every master.
    cache
        .put(&[market(MarketId::new(), 1, "first")])
        .await
        .unwrap();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    for &port in &masters {
        cluster.cli(port, &["CONFIG", "RESETSTAT"]);
    }

    let markets: Vec<_> = (0..200)
        .map(|n| market(MarketId::new(), 2, &format!("m{n}")))
        .collect();
    cache.put(&markets).await.unwrap();
    for held in &markets {
        assert_eq!(cache.get(held.id).await.unwrap().as_ref(), Some(held));
    }
    let evalsha: u64 = masters
        .iter()
        .map(|&port| calls(&cluster, port, "evalsha"))
        .sum();
    // One call per hash slot (200 random ids: nearly all in slots of their own), none refused.
    assert!((150..=200).contains(&evalsha), "{evalsha} EVALSHA calls");
    for &port in &masters {
        assert_eq!(calls(&cluster, port, "script|load"), 0);
        assert!(
            keys_on(&cluster, port) > 20,
            "the batch is spread over the masters: {} keys on {port}",
            keys_on(&cluster, port)
        );
    }
    let total: u64 = masters.iter().map(|&port| keys_on(&cluster, port)).sum();
    assert_eq!(total, 201);

    // Compare-and-set still holds per key across the slots: an older batch changes nothing,
    // a removal refuses the write-back, a newer batch replaces the rest.
    let older: Vec<_> = markets
        .iter()
        .map(|held| market(held.id, 1, "older"))
        .collect();
    cache.put(&older).await.unwrap();
    cache.remove(markets[0].id).await.unwrap();
    let newer: Vec<_> = markets
        .iter()
        .map(|held| market(held.id, 3, "newer"))
        .collect();
    cache.put(&newer).await.unwrap();
    assert_eq!(cache.get(markets[0].id).await.unwrap(), None);
    for (held, new) in markets.iter().zip(&newer).skip(1) {
        let got = cache.get(held.id).await.unwrap().unwrap();
        assert_eq!((got.version, got.name), (3, new.name.clone()));
    }
}

/// A fallback that never decides, so a check can only pass on Redis's answer.
#[derive(Debug)]
struct NoFallback;

#[async_trait]
impl RateLimiter for NoFallback {
    async fn check(&self, _: &RatePolicy, _: &str) -> Result<RateDecision, RateLimitError> {
        Err(RateLimitError("no fallback here".into()))
    }

    async fn peek(&self, _: &RatePolicy, _: &str) -> Result<RateDecision, RateLimitError> {
        Err(RateLimitError("no fallback here".into()))
    }
}

#[tokio::test]
async fn a_killed_master_fails_over_and_nothing_fails_beyond_the_breakers() {
    let mut cluster = PrivateCluster::start();
    let settings = settings(&cluster);
    let connection = connected(&settings).await;
    let cache = RedisCache::new(&connection, &settings);
    let limiter = RedisRateLimiter::new(&connection, &settings, BudgetLimiter::default());
    let redis_limiter = RedisRateLimiter::new(&connection, &settings, NoFallback);
    let durable = InMemoryRevocations::default();
    let revocations = RedisRevocations::new(&connection, &settings, durable.clone());
    let redis_revocations =
        RedisRevocations::new(&connection, &settings, RecordOnly(durable.clone()));
    let policy = RatePolicy::new("failover", 1_000_000, Duration::from_secs(60));
    let expires = Utc::now() + chrono::Duration::hours(1);

    let markets: Vec<_> = (0..60)
        .map(|n| market(MarketId::new(), 1, &format!("m{n}")))
        .collect();
    cache.put(&markets).await.unwrap();
    let mut revoked: Vec<String> = (0..30).map(|n| format!("before-{n}")).collect();
    for token in &revoked {
        revocations.revoke(token, expires).await.unwrap();
    }
    let clients: Vec<String> = (0..30).map(|n| format!("client-{n}")).collect();
    for client in &clients {
        redis_limiter.check(&policy, client).await.unwrap();
    }
    cluster.wait_replicated(Duration::from_secs(10));

    let victim = cluster.masters()[0];
    let killed_at = Instant::now();
    cluster.kill(victim);

    // Until every market is a hit again: revocation checks and limit checks never fail and no
    // revocation is lost; revocations keep being accepted; cache calls may fail (the breaker's
    // degradation: the service reads the database instead).
    let mut cache_errors = 0;
    let mut round = 0;
    let recovered = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no recovery within 60 s of killing {victim}"
        );
        round += 1;
        let token = format!("during-{round}");
        revocations.revoke(&token, expires).await.unwrap();
        revoked.push(token);
        for token in &revoked {
            assert!(revocations.is_revoked(token).await.unwrap(), "{token} lost");
        }
        for client in &clients {
            assert!(limiter.check(&policy, client).await.unwrap().allowed);
        }
        let mut hits = 0;
        for held in &markets {
            match cache.get(held.id).await {
                Ok(Some(got)) => {
                    assert_eq!(&got, held);
                    hits += 1;
                }
                Ok(None) => {}
                Err(_) => cache_errors += 1,
            }
        }
        if hits == markets.len() {
            break killed_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "master {victim} killed: every cached market a hit again after {recovered:?}, \
         {cache_errors} cache reads failed meanwhile (over {round} rounds)"
    );
    assert!(
        !cluster.masters().contains(&victim),
        "{victim} is still a master"
    );

    // Redis itself answers again: limits without a fallback, and every revocation, those
    // written during the outage included (retried in the background), read from Redis alone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let limits = redis_answers_limits(&redis_limiter, &policy, &clients).await;
        let mut cached = true;
        for token in &revoked {
            cached &= matches!(redis_revocations.is_revoked(token).await, Ok(true));
        }
        if limits && cached {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis does not answer limit checks ({limits}) or lacks revocations ({cached}) 30 s after the recovery"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = market(MarketId::new(), 1, "after");
    cache.put(std::slice::from_ref(&after)).await.unwrap();
    assert_eq!(cache.get(after.id).await.unwrap(), Some(after));
}

/// Whether Redis answers a limit check for every client.
async fn redis_answers_limits(
    limiter: &RedisRateLimiter<NoFallback>,
    policy: &RatePolicy,
    clients: &[String],
) -> bool {
    for client in clients {
        if limiter.check(policy, client).await.is_err() {
            return false;
        }
    }
    true
}
