//! Constructor injection: the concrete adapters are named here, once.

use markets_auth::{Argon2Hasher, JwtIssuer};
use markets_domain::auth::{AuthService, TokenRevocations};
use markets_domain::cache::Cache;
use markets_domain::jobs::{JobQueue, Notifier};
use markets_domain::market::{MarketRepository, MarketService};
use markets_domain::ratelimit::{RateLimiter, RatePolicy};
use markets_domain::search::{
    EmbeddingProvider, IndexBacklog, IndexService, SearchService, VectorIndex,
};
use markets_domain::user::UserRepository;
use markets_local::{HashingEmbedder, LocalRateLimiter};
use markets_openai::{OpenAiEmbedder, OpenAiSettings};
use markets_smtp::{LogNotifier, SmtpNotifier};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

use crate::settings::{EmbeddingChoice, NotifyBackend, Settings};
use crate::worker::{Handlers, Worker};

mod probes;
mod shared;
mod store;

pub use probes::{ProbeCache, SearchHealth};
pub use shared::{CacheBackend, Shared};
pub use store::{Store, StoreAdapters, is_sqlite};

/// The market service as this binary wires it: adapters are chosen from config at run time.
pub type AppMarketService = MarketService<Arc<dyn MarketRepository>, Arc<dyn Cache>>;
/// The search service as this binary wires it.
pub type AppSearchService =
    SearchService<Arc<dyn MarketRepository>, Arc<dyn EmbeddingProvider>, Arc<dyn VectorIndex>>;
/// The indexing service as this binary wires it.
pub type AppIndexService = IndexService<Arc<dyn EmbeddingProvider>, Arc<dyn IndexBacklog>>;
/// The auth service as this binary wires it.
pub type AppAuthService =
    AuthService<Arc<dyn UserRepository>, Argon2Hasher, JwtIssuer, Arc<dyn TokenRevocations>>;

/// The services and the infrastructure handles the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct Services {
    /// Market use cases.
    pub markets: AppMarketService,
    /// Registration and login.
    pub auth: AppAuthService,
    /// The database, for readiness checks, metrics and shutdown.
    pub store: Store,
    /// The cache, for readiness checks.
    pub cache: CacheBackend,
    /// Search, with an embedder tuned for answering quickly.
    pub search: AppSearchService,
    /// The same, with an embedder that retries, for the indexer.
    pub indexer: AppIndexService,
    /// When search last had to fall back, for readiness and log throttling.
    pub search_health: Arc<SearchHealth>,
    /// Which embedder is active (`local` or `openai`), for the start-up line.
    pub embeddings: &'static str,
    /// The job queue (the outbox).
    pub jobs: Arc<dyn JobQueue>,
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
    /// The audit trail of security-relevant events.
    pub audit: Arc<dyn markets_domain::audit::AuditLog>,
}

impl Services {
    /// A job worker on these services.
    pub fn worker(&self, settings: &Settings) -> Worker {
        Worker::new(
            self.jobs.clone(),
            self.handlers.clone(),
            settings.jobs.clone(),
            self.store.wakeups(settings),
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
    /// If the database, cache or password hasher settings are invalid, or the SQLite file
    /// cannot be opened. Servers are not contacted yet: PostgreSQL connects lazily and Redis in
    /// the background.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let store = Store::open(settings).await?;
        let ports = store.adapters();
        let local_limiter = Arc::new(LocalRateLimiter::default());
        let shared = Shared::build(settings, ports.revocations.clone(), local_limiter.clone())?;
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
        let embedders = embedders(settings)?;
        let indexer = IndexService::new(embedders.indexing, ports.backlog.clone());
        let handlers = Handlers {
            markets: ports.markets.clone(),
            users: ports.users.clone(),
            notifier: notifier(settings)?,
            indexer: indexer.clone(),
            public_url: settings.notify.public_url.clone(),
        };
        Ok(Self {
            limiter: shared.limiter,
            local_limiter,
            trusted_proxies: settings.rate_limit.trusted_proxies.clone(),
            login_policy: settings.rate_limit.login.policy("login"),
            readiness: Arc::default(),
            audit: ports.audit,
            search: SearchService::new(ports.markets.clone(), embedders.query, ports.index),
            indexer,
            jobs: ports.jobs,
            handlers,
            search_health: Arc::default(),
            embeddings: embedders.name,
            markets: MarketService::new(ports.markets, shared.cache),
            auth: AuthService::new(ports.users, hasher, tokens, shared.revocations),
            store,
            cache: shared.backend,
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
