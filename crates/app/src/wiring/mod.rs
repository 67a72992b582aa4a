//! Constructor injection: the concrete adapters are named here, once.

use markets_auth::{Argon2Hasher, JwtIssuer};
use markets_domain::auth::AuthService;
use markets_domain::jobs::Notifier;
use markets_domain::market::MarketService;
use markets_domain::ratelimit::{RateLimiter, RatePolicy};
use markets_domain::search::{EmbeddingProvider, SearchService};
use markets_local::{HashingEmbedder, LocalRateLimiter};
use markets_openai::{OpenAiEmbedder, OpenAiSettings};
use markets_postgres::{
    PgJobQueue, PgMarketRepository, PgPool, PgRevocations, PgUserRepository, PgVectorIndex,
};
use markets_redis::{RedisCache, RedisConnection, RedisRateLimiter, RedisRevocations};
use markets_smtp::{LogNotifier, SmtpNotifier};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::warn;

use crate::settings::{EmbeddingChoice, NotifyBackend, RateLimitBackend, Settings};
use crate::worker::{Handlers, Worker};

/// The market service as this binary wires it.
pub type AppMarketService = MarketService<PgMarketRepository, RedisCache>;
/// The search service as this binary wires it; the embedder is chosen from config at run time.
pub type AppSearchService =
    SearchService<PgMarketRepository, Arc<dyn EmbeddingProvider>, PgVectorIndex>;

/// The auth service as this binary wires it.
pub type AppAuthService =
    AuthService<PgUserRepository, Argon2Hasher, JwtIssuer, RedisRevocations<PgRevocations>>;

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
    /// Search, with an embedder tuned for answering quickly.
    pub search: AppSearchService,
    /// The same, with an embedder that retries, for the indexer.
    pub indexer: AppSearchService,
    /// When search last had to fall back, for readiness and log throttling.
    pub search_health: Arc<SearchHealth>,
    /// Which embedder is active (`local` or `openai`), for the start-up line.
    pub embeddings: &'static str,
    /// The job queue (the outbox).
    pub jobs: PgJobQueue,
    /// What the jobs need.
    pub handlers: Handlers,
    /// Rate limits (shared through Redis, or per instance).
    pub limiter: Arc<dyn RateLimiter>,
    /// The in-process limiter (the fallback of the shared one), swept on a timer.
    pub local_limiter: Arc<LocalRateLimiter>,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The login policy, applied per email by the login handler.
    pub login_policy: RatePolicy,
    /// The last readiness check, reused for a second.
    pub readiness: Arc<ProbeCache>,
}

/// Readiness results (database, cache) reused for [`ProbeCache::TTL`], so a flood of probes
/// costs the dependencies one check a second; concurrent probes wait for the one running.
#[derive(Debug, Default)]
pub struct ProbeCache {
    last: tokio::sync::Mutex<Option<(std::time::Instant, [bool; 2])>>,
}

impl ProbeCache {
    /// How long a result is reused.
    pub const TTL: Duration = Duration::from_secs(1);

    /// The cached result, or `check`'s if the cached one is older than the TTL.
    pub async fn get_or<F: Future<Output = [bool; 2]>>(
        &self,
        check: impl FnOnce() -> F,
    ) -> [bool; 2] {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = *last
            && at.elapsed() < Self::TTL
        {
            return result;
        }
        let result = check().await;
        *last = Some((std::time::Instant::now(), result));
        result
    }
}

/// Remembers when search last fell back to text search.
#[derive(Debug, Default)]
pub struct SearchHealth {
    /// Seconds since the Unix epoch of the last fallback (0: never).
    last_fallback: AtomicU64,
    /// Seconds since the Unix epoch of the last fallback that was logged.
    last_logged: AtomicU64,
}

impl SearchHealth {
    /// How long a fallback marks the embedder as down, and the least time between two logs.
    const WINDOW_SECS: u64 = 60;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }

    /// Records a fallback; true if it should be logged (at most once per window).
    pub fn fell_back(&self) -> bool {
        let now = Self::now();
        self.last_fallback.store(now, Ordering::Relaxed);
        let logged = self.last_logged.load(Ordering::Relaxed);
        now.saturating_sub(logged) >= Self::WINDOW_SECS
            && self
                .last_logged
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether the embedder failed within the window.
    pub fn degraded(&self) -> bool {
        let last = self.last_fallback.load(Ordering::Relaxed);
        last != 0 && Self::now().saturating_sub(last) < Self::WINDOW_SECS
    }
}

impl Services {
    /// A job worker on these services.
    pub fn worker(&self, settings: &Settings) -> Worker {
        Worker::new(
            self.jobs.clone(),
            self.handlers.clone(),
            settings.jobs.clone(),
            settings.database.url.clone(),
        )
    }
}

fn notifier(settings: &Settings) -> anyhow::Result<Arc<dyn Notifier>> {
    Ok(match settings.notify.backend {
        NotifyBackend::Log => Arc::new(LogNotifier),
        NotifyBackend::Smtp => Arc::new(SmtpNotifier::new(&settings.smtp())?),
    })
}

/// The query-side and indexing-side embedders and the active one's name.
struct Embedders {
    query: Arc<dyn EmbeddingProvider>,
    indexing: Arc<dyn EmbeddingProvider>,
    name: &'static str,
}

fn embedders(settings: &Settings) -> anyhow::Result<Embedders> {
    let local = || -> anyhow::Result<Embedders> {
        let embedder: Arc<dyn EmbeddingProvider> =
            Arc::new(HashingEmbedder::new(settings.openai.dimensions)?);
        Ok(Embedders {
            query: embedder.clone(),
            indexing: embedder,
            name: "local",
        })
    };
    match (settings.search.provider, &settings.openai.api_key) {
        (EmbeddingChoice::Local, _) | (EmbeddingChoice::Auto, None) => local(),
        (EmbeddingChoice::Openai | EmbeddingChoice::Auto, Some(key)) => openai(settings, key),
        (EmbeddingChoice::Openai, None) => {
            anyhow::bail!("search.provider is \"openai\" but OPENAI_API_KEY is not set")
        }
    }
}

impl Services {
    /// Builds every adapter and service.
    ///
    /// # Errors
    /// If the pool, cache or password hasher settings are invalid. Nothing is contacted yet:
    /// the pool connects lazily and the cache client in the background.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = markets_postgres::build_pool(&settings.pool())?;
        let redis_settings = settings.redis_cache();
        let redis = RedisConnection::connect(&redis_settings)?;
        let cache = RedisCache::new(&redis, &redis_settings);
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
        let markets = PgMarketRepository::new(pool.clone());
        let index = PgVectorIndex::new(pool.clone());
        let embedders = embedders(settings)?;
        let indexer = SearchService::new(markets.clone(), embedders.indexing, index.clone());
        let handlers = Handlers {
            markets: markets.clone(),
            users: PgUserRepository::new(pool.clone()),
            notifier: notifier(settings)?,
            indexer: indexer.clone(),
            public_url: settings.notify.public_url.clone(),
        };
        let local_limiter = Arc::new(LocalRateLimiter::default());
        let limiter: Arc<dyn RateLimiter> = match settings.rate_limit.backend {
            RateLimitBackend::Memory => local_limiter.clone(),
            RateLimitBackend::Redis => Arc::new(RedisRateLimiter::new(
                &redis,
                &redis_settings,
                local_limiter.clone(),
            )),
        };
        Ok(Self {
            limiter,
            local_limiter,
            trusted_proxies: settings.rate_limit.trusted_proxies.clone(),
            login_policy: settings.rate_limit.login.policy("login"),
            readiness: Arc::default(),
            search: SearchService::new(markets.clone(), embedders.query, index),
            indexer,
            jobs: PgJobQueue::new(pool.clone()),
            handlers,
            search_health: Arc::default(),
            embeddings: embedders.name,
            markets: MarketService::new(markets, cache.clone()),
            auth: AuthService::new(
                PgUserRepository::new(pool.clone()),
                hasher,
                tokens,
                RedisRevocations::new(&redis, &redis_settings, PgRevocations::new(pool.clone())),
            ),
            pool,
            cache,
        })
    }
}

/// Two clients of the OpenAI-compatible API: queries get one attempt within the search budget
/// (a slow provider must not hold up a search that can fall back), indexing gets the
/// configured timeout and retries with backoff.
fn openai(settings: &Settings, key: &secrecy::SecretString) -> anyhow::Result<Embedders> {
    let configured = |timeout_ms: u64, max_attempts: u32| {
        let mut client = OpenAiSettings::new(settings.openai.base_url.clone(), key.clone());
        client.model = settings.openai.model.clone();
        client.dimensions = settings.openai.dimensions;
        client.request_timeout = Duration::from_millis(timeout_ms);
        client.retry.max_attempts = max_attempts;
        OpenAiEmbedder::new(client)
    };
    Ok(Embedders {
        query: Arc::new(configured(settings.search.query_timeout_ms, 1)?),
        indexing: Arc::new(configured(
            settings.openai.timeout_ms,
            settings.openai.max_attempts,
        )?),
        name: "openai",
    })
}
