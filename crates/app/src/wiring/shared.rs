//! What instances share through Redis when `REDIS_URL` is set: the market cache, rate-limit
//! counts and the revocation check. Without Redis the same ports are served in this process (a
//! moka cache, governor counters, the database's revocation table), which is right for one
//! instance and needs no server.

use markets_domain::auth::TokenRevocations;
use markets_domain::cache::{Cache, ChangeFeed, FenceBook, FencedCache, OwnChanges};
use markets_domain::ratelimit::RateLimiter;
use markets_local::{LocalRateLimiter, MokaCache, MokaCacheSettings};
use markets_postgres::{Background, ChangeFeedSettings, PgChangeFeed};
use markets_redis::{RedisCache, RedisConnection, RedisRateLimiter, RedisRevocations};
use std::sync::Arc;
use std::time::Duration;

use super::store::is_sqlite;

use crate::settings::{RateLimitBackend, Settings};

/// The cache, for readiness checks and the start-up line.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    /// Redis: can be down, and its hits are only served while the change feed is current.
    Redis {
        /// The cache.
        cache: RedisCache,
        /// What its hits are checked against.
        feed: Arc<dyn ChangeFeed>,
        /// The feed's listener, which lives as long as a clone of this does.
        listener: Option<Arc<Background>>,
    },
    /// This process's memory: always up.
    InProcess,
}

impl CacheBackend {
    /// `redis` or `memory`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::InProcess => "memory",
        }
    }

    /// Whether the cache answers and its hits may be served.
    pub async fn ping(&self) -> bool {
        match self {
            Self::Redis { cache, feed, .. } => cache.ping().await.is_ok() && feed.is_current(),
            Self::InProcess => true,
        }
    }
}

/// The shared-state ports, wired for Redis or for this process.
#[derive(Debug)]
pub struct Shared {
    /// The market cache.
    pub cache: Arc<dyn Cache>,
    /// Which cache it is.
    pub backend: CacheBackend,
    /// Rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// The revocation check: Redis in front of the database's table, or the table alone.
    pub revocations: Arc<dyn TokenRevocations>,
}

impl Shared {
    /// Wires Redis if `settings` name one, else in-process stand-ins; `durable` are the
    /// database's revocations, `local` the in-process limiter (Redis's fallback).
    ///
    /// # Errors
    /// If the Redis settings are invalid. Nothing is contacted yet: Redis connects in the
    /// background.
    pub fn build(
        settings: &Settings,
        durable: Arc<dyn TokenRevocations>,
        local: Arc<LocalRateLimiter>,
    ) -> anyhow::Result<Self> {
        let Some(redis_settings) = settings.redis_client() else {
            return Ok(Self {
                cache: Arc::new(MokaCache::new(MokaCacheSettings {
                    ttl: Duration::from_secs(settings.cache.ttl_secs),
                    ..MokaCacheSettings::default()
                })),
                backend: CacheBackend::InProcess,
                limiter: local,
                revocations: durable,
            });
        };
        let redis = RedisConnection::connect(&redis_settings)?;
        let cache = RedisCache::new(&redis, &redis_settings);
        let book = Arc::new(FenceBook::new(
            settings.cache.fence_window(),
            settings.cache.max_fences,
        ));
        let (feed, listener) = change_feed(settings, book.clone());
        let limiter: Arc<dyn RateLimiter> = match settings.rate_limit_backend() {
            RateLimitBackend::Memory => local,
            RateLimitBackend::Redis => {
                Arc::new(RedisRateLimiter::new(&redis, &redis_settings, local))
            }
        };
        Ok(Self {
            cache: Arc::new(FencedCache::new(cache.clone(), book, feed.clone())),
            backend: CacheBackend::Redis {
                cache,
                feed,
                listener,
            },
            limiter,
            revocations: Arc::new(RedisRevocations::new(&redis, &redis_settings, durable)),
        })
    }
}

/// The feed that keeps the cache's fences: the database's, on PostgreSQL (several instances);
/// on SQLite, which one process owns, that process's own writes, which fence themselves.
fn change_feed(
    settings: &Settings,
    book: Arc<FenceBook>,
) -> (Arc<dyn ChangeFeed>, Option<Arc<Background>>) {
    if is_sqlite(&settings.database.url) {
        return (Arc::new(OwnChanges), None);
    }
    let (feed, listener) = PgChangeFeed::spawn(
        ChangeFeedSettings {
            url: settings.database.url.clone(),
            propagation: Duration::from_millis(settings.cache.propagation_ms),
            connect_timeout: Duration::from_millis(settings.database.connect_timeout_ms),
        },
        book,
    );
    (Arc::new(feed), Some(Arc::new(listener)))
}
