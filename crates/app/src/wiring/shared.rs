//! What instances share through Redis when `REDIS_URL` is set: the market cache, rate-limit
//! counts and the revocation check. Without Redis the same ports are served in this process (a
//! moka cache, governor counters, the database's revocation table), which is right for one
//! instance and needs no server.

use markets_domain::auth::TokenRevocations;
use markets_domain::cache::Cache;
use markets_domain::ratelimit::RateLimiter;
use markets_local::{LocalRateLimiter, MokaCache, MokaCacheSettings};
use markets_redis::{RedisCache, RedisConnection, RedisRateLimiter, RedisRevocations};
use std::sync::Arc;

use crate::settings::{RateLimitBackend, Settings};

/// The cache, for readiness checks and the start-up line.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    /// Redis: can be down.
    Redis(RedisCache),
    /// This process's memory: always up.
    InProcess,
}

impl CacheBackend {
    /// `redis` or `memory`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redis(_) => "redis",
            Self::InProcess => "memory",
        }
    }

    /// Whether the cache answers.
    pub async fn ping(&self) -> bool {
        match self {
            Self::Redis(cache) => cache.ping().await.is_ok(),
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
                    ttl: std::time::Duration::from_secs(settings.cache.ttl_secs),
                    ..MokaCacheSettings::default()
                })),
                backend: CacheBackend::InProcess,
                limiter: local,
                revocations: durable,
            });
        };
        let redis = RedisConnection::connect(&redis_settings)?;
        let cache = RedisCache::new(&redis, &redis_settings);
        let limiter: Arc<dyn RateLimiter> = match settings.rate_limit_backend() {
            RateLimitBackend::Memory => local,
            RateLimitBackend::Redis => {
                Arc::new(RedisRateLimiter::new(&redis, &redis_settings, local))
            }
        };
        Ok(Self {
            cache: Arc::new(cache.clone()),
            backend: CacheBackend::Redis(cache),
            limiter,
            revocations: Arc::new(RedisRevocations::new(&redis, &redis_settings, durable)),
        })
    }
}
