//! Constructor injection: the concrete adapters are named here, once, and what they make is
//! split in two: [`AppState`], what requests need, and [`Infrastructure`], what the process
//! operates beside them (pools, queues, background work).

use anyhow::Context;
use markets_application::handlers::{Indexer, JobHandlers};
use markets_application::limits::RateLimits;
use markets_application::login::LoginFlow;
use markets_application::security::SecurityEvents;
use markets_application::worker::{Lanes, Worker, WorkerSettings};
use markets_auth::{Argon2Hasher, JwtIssuer};
use markets_domain::audit::AuditLog;
use markets_domain::auth::{AuthService, TokenRevocations};
use markets_domain::cache::Cache;
use markets_domain::jobs::{JobQueue, JobWakeups, Notifier};
use markets_domain::market::{MarketRepository, MarketService};
use markets_domain::search::{
    EmbeddingProvider, IndexPacing, IndexService, SearchService, VectorIndex,
};
use markets_domain::user::UserRepository;
use markets_local::{HashingEmbedder, LocalRateLimiter};
use markets_minilm::{MiniLmEmbedder, MiniLmSettings};
use markets_openai::{OpenAiEmbedder, OpenAiSettings};
use markets_smtp::{LogNotifier, SmtpNotifier};
use secrecy::ExposeSecret;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

use crate::http::client_ip::ClientAddressing;
use crate::http::cursor::Cursors;
use crate::settings::{EmbeddingChoice, JobSettings, NotifyBackend, SearchSettings, Settings};

mod probes;
mod shared;
mod store;

pub use probes::{Checks, ReadinessProbe, SearchHealth};
pub use shared::{CacheBackend, Shared};
pub use store::{Store, StoreAdapters, is_sqlite};

/// The market service as this binary wires it: adapters are chosen from config at run time.
pub type AppMarketService = MarketService<Arc<dyn MarketRepository>, Arc<dyn Cache>>;
/// The search service as this binary wires it.
pub type AppSearchService =
    SearchService<Arc<dyn MarketRepository>, Arc<dyn EmbeddingProvider>, Arc<dyn VectorIndex>>;
/// The auth service as this binary wires it.
pub type AppAuthService =
    AuthService<Arc<dyn UserRepository>, Argon2Hasher, JwtIssuer, Arc<dyn TokenRevocations>>;
/// The login flow as this binary wires it.
pub type AppLoginFlow =
    LoginFlow<Arc<dyn UserRepository>, Argon2Hasher, JwtIssuer, Arc<dyn TokenRevocations>>;
/// The job worker as this binary wires it.
pub type AppWorker = Worker<Arc<dyn JobQueue>, Arc<dyn JobWakeups>>;

/// What requests need, handed to handlers, extractors and middleware as `web::Data<AppState>`:
/// the use cases and the request-time policies around them. Nothing here is for operating the
/// process (pools, queues, background work): that is [`Infrastructure`], which handlers never see.
#[derive(Debug, Clone)]
pub struct AppState {
    markets: AppMarketService,
    auth: AppAuthService,
    login: AppLoginFlow,
    search: AppSearchService,
    limits: RateLimits,
    events: SecurityEvents,
    audit: Arc<dyn AuditLog>,
    client_addressing: ClientAddressing,
    search_health: Arc<SearchHealth>,
    cursors: Cursors,
}

impl AppState {
    /// Market use cases.
    pub fn markets(&self) -> &AppMarketService {
        &self.markets
    }

    /// Registration, sessions, logout and roles.
    pub fn auth(&self) -> &AppAuthService {
        &self.auth
    }

    /// Login: the per-account failure budgets, authentication and the failed-login audit.
    pub fn login(&self) -> &AppLoginFlow {
        &self.login
    }

    /// Search, with an embedder tuned for answering quickly (one attempt within the budget).
    pub fn search(&self) -> &AppSearchService {
        &self.search
    }

    /// Rate-limit decisions: shared through Redis, or per instance.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Where security events are logged and recorded.
    pub fn events(&self) -> &SecurityEvents {
        &self.events
    }

    /// The audit trail, for administrators to read.
    pub fn audit(&self) -> &Arc<dyn AuditLog> {
        &self.audit
    }

    /// How a request's client address is resolved: which proxies and which of their headers
    /// are believed, and how IPv6 clients are grouped for rate limits.
    pub fn client_addressing(&self) -> &ClientAddressing {
        &self.client_addressing
    }

    /// When search last had to fall back, so that the cause is logged at most once a minute.
    pub fn search_health(&self) -> &SearchHealth {
        &self.search_health
    }

    /// Mints and checks paging cursors, under a key derived from the token secret.
    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }
}

/// What the process runs beside the requests: the database pool, the cache client and the
/// readiness probe over them, the job queue and what its jobs need, the indexer, and the
/// in-process limiter that must be swept. Commands and `serve`'s background tasks use these.
#[derive(Debug, Clone)]
pub struct Infrastructure {
    store: Store,
    ports: StoreAdapters,
    cache: CacheBackend,
    readiness: Arc<ReadinessProbe>,
    handlers: JobHandlers,
    wakeups: Arc<dyn JobWakeups>,
    local_limiter: Arc<LocalRateLimiter>,
    indexer: Indexer,
    embeddings: &'static str,
}

impl Infrastructure {
    /// The database, for metrics, migrations and shutdown.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The storage ports over the database, for commands that work on the data directly.
    pub fn ports(&self) -> &StoreAdapters {
        &self.ports
    }

    /// The cache, for the start-up line.
    pub fn cache(&self) -> &CacheBackend {
        &self.cache
    }

    /// What `/health/ready` checks, with its last result.
    pub fn readiness(&self) -> &Arc<ReadinessProbe> {
        &self.readiness
    }

    /// The job queue (the outbox), for `markets jobs`.
    pub fn jobs(&self) -> &Arc<dyn JobQueue> {
        &self.ports.jobs
    }

    /// The in-process limiter (the shared one's fallback), to be swept on a timer.
    pub fn local_limiter(&self) -> &Arc<LocalRateLimiter> {
        &self.local_limiter
    }

    /// Indexing, with an embedder that retries with backoff: never used for queries.
    pub fn indexer(&self) -> &Indexer {
        &self.indexer
    }

    /// Which embedder is active (`local`, `minilm` or `openai`), for the start-up line.
    pub fn embeddings(&self) -> &'static str {
        self.embeddings
    }

    /// A job worker on this queue, paced by `settings`.
    pub fn worker(&self, settings: &JobSettings) -> AppWorker {
        Worker::new(
            self.ports.jobs.clone(),
            self.wakeups.clone(),
            self.handlers.clone(),
            worker_settings(settings),
        )
    }
}

/// The worker's pacing, from the `[jobs]` settings.
fn worker_settings(settings: &JobSettings) -> WorkerSettings {
    WorkerSettings {
        lanes: Lanes::new(settings.lanes.per_kind()),
        lease: Duration::from_secs(settings.lease_secs),
        poll_interval: Duration::from_millis(settings.poll_interval_ms),
        max_attempts: settings.max_attempts,
        retry_base: Duration::from_millis(settings.retry_base_ms),
        retry_max: Duration::from_millis(settings.retry_max_ms),
        shutdown_grace: Duration::from_secs(settings.shutdown_grace_secs),
        ..WorkerSettings::default()
    }
}

/// How much indexing work a run claims, from the `[search]` settings.
fn index_pacing(settings: &SearchSettings) -> IndexPacing {
    IndexPacing {
        batch: settings.index_batch,
        lease: Duration::from_secs(settings.index_lease_secs),
    }
}

/// Everything [`Components::build`] wires: the state requests need and the infrastructure
/// beside them. A plain pair: each command takes the half, or the parts, it uses.
#[derive(Debug, Clone)]
pub struct Components {
    /// What requests need.
    pub state: AppState,
    /// What the process operates.
    pub infra: Infrastructure,
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

impl Embedders {
    /// `embedder` on both sides, for a provider whose queries and indexing need no different
    /// budgets.
    fn shared(embedder: impl EmbeddingProvider, name: &'static str) -> Self {
        let embedder: Arc<dyn EmbeddingProvider> = Arc::new(embedder);
        Self {
            query: embedder.clone(),
            indexing: embedder,
            name,
        }
    }
}

fn embedders(settings: &Settings) -> anyhow::Result<Embedders> {
    let model_dir = settings.search.model_dir.as_deref();
    match (settings.search.provider, &settings.openai.api_key) {
        (EmbeddingChoice::Minilm, _) => minilm(model_dir),
        (EmbeddingChoice::Openai | EmbeddingChoice::Auto, Some(key)) => openai(settings, key),
        (EmbeddingChoice::Openai, None) => {
            anyhow::bail!("search.provider is \"openai\" but OPENAI_API_KEY is not set")
        }
        (EmbeddingChoice::Auto, None) if model_dir.is_some_and(Path::is_dir) => minilm(model_dir),
        (EmbeddingChoice::Local | EmbeddingChoice::Auto, _) => hashing(settings),
    }
}

/// One embedder for both sides: the lexical hashing embedder, at `openai.dimensions` so that
/// switching to the API later keeps the index's size.
fn hashing(settings: &Settings) -> anyhow::Result<Embedders> {
    let embedder = HashingEmbedder::new(settings.openai.dimensions)?;
    Ok(Embedders::shared(embedder, "local"))
}

/// One embedder for both sides: all-MiniLM-L6-v2 from `search.model_dir`, loaded now so that a
/// missing or broken model stops start-up instead of every search.
fn minilm(model_dir: Option<&Path>) -> anyhow::Result<Embedders> {
    let dir = model_dir.context("search.provider is \"minilm\" but search.model_dir is not set")?;
    let embedder = MiniLmEmbedder::load(&MiniLmSettings::new(dir)).with_context(|| {
        format!(
            "search.model_dir ({}) does not hold a usable all-MiniLM-L6-v2 model \
             (scripts/model.sh provisions one)",
            dir.display()
        )
    })?;
    Ok(Embedders::shared(embedder, "minilm"))
}

impl Components {
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
            // Only on loopback outside production (see settings::bounds).
            warn!("JWT_SECRET is not set: using a random secret; tokens die with this process");
            JwtIssuer::random_secret()
        });
        let tokens = JwtIssuer::new(
            &secret,
            Duration::from_secs(settings.auth.token_lifetime_secs),
        );
        let embedders = embedders(settings)?;
        let indexer = IndexService::new(
            embedders.indexing,
            ports.backlog.clone(),
            index_pacing(&settings.search),
        );
        let handlers = JobHandlers::new(
            ports.markets.clone(),
            ports.users.clone(),
            notifier(settings)?,
            indexer.clone(),
            settings.notify.public_url.as_str(),
        );
        let search_health = Arc::<SearchHealth>::default();
        let auth = AuthService::new(ports.users.clone(), hasher, tokens, shared.revocations);
        let limits = RateLimits::new(shared.limiter);
        let events = SecurityEvents::new(ports.audit.clone());
        let state = AppState {
            search: SearchService::new(ports.markets.clone(), embedders.query, ports.index.clone()),
            markets: MarketService::new(ports.markets.clone(), shared.cache),
            login: LoginFlow::new(
                auth.clone(),
                limits.clone(),
                settings.rate_limit.login_failures.budgets(),
                events.clone(),
            ),
            auth,
            limits,
            events,
            audit: ports.audit.clone(),
            client_addressing: ClientAddressing::new(&settings.rate_limit),
            search_health: search_health.clone(),
            cursors: Cursors::new(secret.expose_secret().as_bytes()),
        };
        let infra = Infrastructure {
            readiness: Arc::new(ReadinessProbe::new(
                store.clone(),
                shared.backend.clone(),
                search_health,
            )),
            wakeups: store.wakeups(settings),
            store,
            ports,
            cache: shared.backend,
            handlers,
            local_limiter,
            indexer,
            embeddings: embedders.name,
        };
        Ok(Self { state, infra })
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
