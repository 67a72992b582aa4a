//! Constructor injection: the concrete adapters are named here, once.

use markets_auth::{Argon2Hasher, JwtIssuer};
use markets_domain::auth::AuthService;
use markets_domain::market::MarketService;
use markets_postgres::{PgMarketRepository, PgPool, PgUserRepository};
use markets_redis::RedisCache;
use std::time::Duration;
use tracing::warn;

use crate::settings::Settings;

/// The market service as this binary wires it.
pub type AppMarketService = MarketService<PgMarketRepository, RedisCache>;
/// The auth service as this binary wires it.
pub type AppAuthService = AuthService<PgUserRepository, Argon2Hasher, JwtIssuer>;

/// The services and the infrastructure handles the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct Services {
    /// Market use cases.
    pub markets: AppMarketService,
    /// Registration and login.
    pub auth: AppAuthService,
    /// The database pool, for readiness checks.
    pub pool: PgPool,
    /// The cache, for readiness checks.
    pub cache: RedisCache,
}

impl Services {
    /// Builds every adapter and service.
    ///
    /// # Errors
    /// If the pool, cache or password hasher settings are invalid. Nothing is contacted yet:
    /// the pool connects lazily and the cache client in the background.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = markets_postgres::build_pool(&settings.pool())?;
        let cache = RedisCache::connect(&settings.redis_cache())?;
        let hasher = Argon2Hasher::new(settings.auth.password_hashing)?;
        let secret = settings.auth.jwt_secret.clone().unwrap_or_else(|| {
            // Production refuses to start without one (see Settings::validate).
            warn!("JWT_SECRET is not set: using a random secret; tokens die with this process");
            JwtIssuer::random_secret()
        });
        let tokens = JwtIssuer::new(
            &secret,
            Duration::from_secs(settings.auth.token_lifetime_secs),
        );
        Ok(Self {
            markets: MarketService::new(PgMarketRepository::new(pool.clone()), cache.clone()),
            auth: AuthService::new(PgUserRepository::new(pool.clone()), hasher, tokens),
            pool,
            cache,
        })
    }
}
