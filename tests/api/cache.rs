//! Caching on a real Redis: cache-aside with `X-Cache`, write-through, invalidation, the stale
//! write-back race, and a Redis outage that never fails a read.

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use futures_util::future::join_all;
use markets_domain::cache::Cache;
use markets_domain::market::{MarketId, MarketRepository};
use markets_domain::permission::Role;
use markets_postgres::testing::TestDatabase;
use markets_redis::RedisCache;
use markets_redis::testing::{PrivateRedis, shared_settings};
use reqwest::{Method, Response};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::helpers::{TestApp, body, error};

/// An app caching in the shared test Redis, whichever database this run uses.
async fn redis_app() -> TestApp {
    TestApp::spawn_with_redis(shared_settings()).await
}

fn x_cache(response: &Response) -> String {
    response.headers()["x-cache"].to_str().unwrap().to_owned()
}

async fn get_market(app: &TestApp, id: &str) -> (String, Value) {
    let response = app.get(&format!("/api/v1/markets/{id}")).await;
    let cache = x_cache(&response);
    (cache, body(response, 200).await["data"].clone())
}

/// Deletes the market's entry straight from Redis (as expiry would).
fn evict(app: &TestApp, id: &str) {
    let key = format!("{}market:{id}", app.redis().key_prefix);
    let status = Command::new("redis-cli")
        .args(["-u", &app.redis().url, "DEL", &key])
        .output()
        .unwrap();
    assert!(status.status.success());
}

#[tokio::test]
async fn reads_miss_then_hit_and_creates_write_through() {
    let app = redis_app().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Cached", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();

    let (cache, first) = get_market(&app, id).await;
    assert_eq!(cache, "HIT", "the created market was written through");
    assert_eq!(first, market);

    evict(&app, id);
    let (cache, missed) = get_market(&app, id).await;
    assert_eq!((cache.as_str(), &missed), ("MISS", &market));
    let (cache, hit) = get_market(&app, id).await;
    assert_eq!((cache.as_str(), &hit), ("HIT", &market));
}

#[tokio::test]
async fn updates_and_deletes_are_never_served_stale() {
    let app = redis_app().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Before", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();
    get_market(&app, id).await;

    let path = format!("/api/v1/markets/{id}");
    let patch = json!({"name": "After", "volume": 5});
    body(
        app.request(Method::PATCH, &path, Some(&ann.token), Some(patch))
            .await,
        200,
    )
    .await;
    let (_, after) = get_market(&app, id).await;
    assert_eq!(after["name"], "After");
    assert_eq!(after["volume"], 5.0);

    let admin = app.user("root", Role::Admin).await;
    let deleted = app
        .request(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    assert_eq!(deleted.status(), 204);
    error(app.get(&path).await, 404, "not_found").await;
}

#[tokio::test]
async fn a_slow_reader_cannot_write_back_an_old_version() {
    let app = redis_app().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Original", "description": ""}))
        .await;
    let id: MarketId = market["id"].as_str().unwrap().parse().unwrap();

    // A reader that missed the cache has read the row...
    let stale = app
        .components
        .infra
        .ports()
        .markets
        .find_by_id(id)
        .await
        .unwrap()
        .unwrap();
    // ...an update commits and refreshes the cache...
    let path = format!("/api/v1/markets/{id}");
    let patch = json!({"name": "Updated"});
    body(
        app.request(Method::PATCH, &path, Some(&ann.token), Some(patch))
            .await,
        200,
    )
    .await;
    // ...and only then does the reader write back what it read.
    let cache = RedisCache::connect(app.redis()).unwrap();
    cache.put(std::slice::from_ref(&stale)).await.unwrap();
    let (status, served) = get_market(&app, &id.to_string()).await;
    assert_eq!(
        (status.as_str(), served["name"].as_str()),
        ("HIT", Some("Updated"))
    );

    // The same after a delete: the write-back must not resurrect the market.
    let admin = app.user("root", Role::Admin).await;
    app.request(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    cache.put(std::slice::from_ref(&stale)).await.unwrap();
    error(app.get(&path).await, 404, "not_found").await;
}

async fn readiness(app: &TestApp) -> Value {
    body(app.get("/health/ready").await, 200).await
}

#[tokio::test]
async fn a_redis_outage_degrades_but_never_fails_reads() {
    let mut redis = PrivateRedis::start();
    let app = TestApp::spawn_with_redis(redis.settings()).await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Resilient", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();
    assert_eq!(readiness(&app).await["status"], "ok");

    redis.stop();
    for _ in 0..3 {
        let (cache, served) = get_market(&app, id).await;
        assert_eq!((cache.as_str(), &served), ("MISS", &market));
    }
    // Readiness reuses its last result for a second: ask until it has looked again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut ready = readiness(&app).await;
    while ready["status"] == "ok" && std::time::Instant::now() < deadline {
        ready = readiness(&app).await;
    }
    assert_eq!(ready["status"], "degraded");
    assert_eq!(
        ready["checks"],
        json!({"database": "up", "cache": "down", "embeddings": "up"})
    );
    let patch = json!({"name": "Changed during the outage"});
    let path = format!("/api/v1/markets/{id}");
    body(
        app.request(Method::PATCH, &path, Some(&ann.token), Some(patch))
            .await,
        200,
    )
    .await;

    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut recovered = false;
    while !recovered && std::time::Instant::now() < deadline {
        recovered = readiness(&app).await["status"] == "ok";
    }
    assert!(recovered, "the cache client did not reconnect");
    let (first, served) = get_market(&app, id).await;
    assert_eq!(served["name"], "Changed during the outage");
    assert_eq!(first, "MISS", "the restarted Redis is empty");
    let (second, _) = get_market(&app, id).await;
    assert_eq!(second, "HIT");
}

/// Held by the tests that start several instances or count queries, so they do not overlap.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static MARKET_READS: AtomicUsize = AtomicUsize::new(0);
static WATCHED: OnceLock<String> = OnceLock::new();

/// Counts the database reads of one market (its id is in the query's binds), whichever test's
/// connection runs them: the instrumentation is process-wide, the id is this test's own.
struct CountReadsOfWatched;

impl Instrumentation for CountReadsOfWatched {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let (InstrumentationEvent::StartQuery { query, .. }, Some(id)) = (event, WATCHED.get()) {
            let sql = query.to_string();
            // PostgreSQL quotes identifiers with double quotes, SQLite with backticks.
            let reads_markets = sql.starts_with("SELECT \"markets\".\"id\"")
                || sql.starts_with("SELECT `markets`.`id`");
            if reads_markets && sql.contains(id.as_str()) {
                MARKET_READS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test]
async fn a_stampede_on_a_cold_key_reads_the_database_once() {
    // Counts queries, so nothing else of this module may crowd its 200 reads apart.
    let _alone = ALONE.lock().await;
    set_default_instrumentation(|| Some(Box::new(CountReadsOfWatched))).unwrap();
    let app = redis_app().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Hot", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();
    WATCHED.set(id.to_owned()).unwrap();
    evict(&app, id);

    let path = format!("/api/v1/markets/{id}");
    let responses = join_all((0..200).map(|_| app.get(&path))).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    let reads = MARKET_READS.load(Ordering::SeqCst);
    assert_eq!(
        reads, 1,
        "200 concurrent cold reads, {reads} database reads"
    );
}

#[tokio::test]
async fn a_change_its_writer_could_not_take_to_redis_is_never_read_old_elsewhere() {
    let _alone = ALONE.lock().await;
    // Both instances on PostgreSQL, whichever set this run uses: the fences follow its change
    // feed. The reader shares Redis with this test; the writer cannot reach Redis at all.
    let db = TestDatabase::new().await;
    let url = db.settings().url.expose_secret().to_owned();
    let redis = shared_settings();
    let reader = TestApp::spawn_with(redis.clone(), &[("DATABASE_URL", &url)]).await;
    let writer = TestApp::spawn_configured(&[
        ("DATABASE_URL", &url),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("MARKETS__REDIS__KEY_PREFIX", &redis.key_prefix),
    ])
    .await;
    let admin = reader.user("admin", Role::Admin).await;
    let market = reader
        .market(&admin, json!({"name": "Before", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();
    assert_eq!(get_market(&reader, id).await.0, "HIT");

    let path = format!("/api/v1/markets/{id}");
    let patch = json!({"name": "After"});
    let patched = writer.request(Method::PATCH, &path, Some(&admin.token), Some(patch));
    assert_eq!(body(patched.await, 200).await["data"]["name"], "After");
    assert!(
        cached_text(&reader, id).contains("Before"),
        "Redis kept the old entry"
    );
    let (cache, read) = get_market(&reader, id).await;
    assert_eq!((cache.as_str(), &read["name"]), ("MISS", &json!("After")));

    let deleted = writer.request(Method::DELETE, &path, Some(&admin.token), None);
    assert_eq!(deleted.await.status(), 204);
    assert!(
        cached_text(&reader, id).contains("After"),
        "Redis kept the entry"
    );
    error(reader.get(&path).await, 404, "not_found").await;
}

/// The market's entry as Redis holds it.
fn cached_text(app: &TestApp, id: &str) -> String {
    let key = format!("{}market:{id}", app.redis().key_prefix);
    let output = Command::new("redis-cli")
        .args(["-u", &app.redis().url, "GET", &key])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}
