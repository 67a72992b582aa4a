//! Typed configuration: compiled-in `config/` files, an optional override folder, then the
//! environment. Every problem is reported as one line naming the key.

use config::{Config, File, FileFormat};
use markets_domain::jobs::JobKind;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

mod bounds;

/// Where the service runs; picks `config/{env}.toml` and a few safety rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine: forgiving defaults.
    Development,
    /// Automated tests.
    Test,
    /// Serving real users: secrets are mandatory.
    Production,
}

impl Environment {
    /// The environment's name, as in `APP_ENV`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }

    fn embedded_overrides(self) -> &'static str {
        match self {
            Self::Development => include_str!("../../../config/development.toml"),
            Self::Test => include_str!("../../../config/test.toml"),
            Self::Production => include_str!("../../../config/production.toml"),
        }
    }
}

/// Everything the service reads from configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Set from `APP_ENV` after loading; not a key in the files.
    #[serde(skip_deserializing, default = "development")]
    pub environment: Environment,
    /// The HTTP server.
    pub server: ServerSettings,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Redis, if any, and how the cache, rate limits and revocations use it.
    pub redis: RedisConfig,
    /// The market cache.
    pub cache: CacheSettings,
    /// Tokens and passwords.
    pub auth: AuthSettings,
    /// The OpenAI-compatible embeddings API.
    pub openai: OpenAiConfig,
    /// Semantic search and its index.
    pub search: SearchSettings,
    /// The background job worker.
    pub jobs: JobSettings,
    /// Notifications to users.
    pub notify: NotifySettings,
    /// Rate limits.
    pub rate_limit: RateLimitSettings,
    /// The audit trail.
    pub audit: AuditSettings,
    /// Browser origins allowed to call the API.
    pub cors: CorsSettings,
    /// Logging.
    pub log: LogSettings,
    /// Where `/metrics` is served.
    pub metrics: MetricsSettings,
}

fn development() -> Environment {
    Environment::Development
}

/// The audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Days events are kept (0: forever).
    pub retention_days: u32,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to listen on (`BIND_ADDR`).
    pub bind_addr: SocketAddr,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL (`DATABASE_URL`); may hold a password, so it is secret.
    pub url: SecretString,
    /// The most connections open at once.
    pub pool_size: usize,
    /// How long a request waits for a connection.
    pub wait_timeout_ms: u64,
    /// How long opening a connection may take.
    pub connect_timeout_ms: u64,
    /// Whether `serve` migrates before listening.
    pub migrate_on_start: bool,
    /// Streaming replicas of the PostgreSQL primary (a list, or a comma-separated string as an
    /// environment variable gives it): lists, search and cache misses read from them. Empty:
    /// every read goes to the primary.
    #[serde(deserialize_with = "list_or_csv")]
    pub replica_urls: Vec<ReplicaUrl>,
    /// A replica further behind the primary than this (or not answering) serves no reads until
    /// it has caught up.
    pub max_replica_lag_ms: u64,
}

/// A read replica's `postgres://` URL; secret, as it may hold a password.
#[derive(Debug, Clone)]
pub struct ReplicaUrl {
    url: SecretString,
    name: String,
}

impl ReplicaUrl {
    /// The URL, credentials and all.
    pub fn secret(&self) -> &SecretString {
        &self.url
    }

    /// `host:port`, for readiness, metrics and logs (never the credentials).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::str::FromStr for ReplicaUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refused = || "a replica URL must be postgres://host[:port]/database".to_owned();
        let parsed = url::Url::parse(text).map_err(|_| refused())?;
        let host = parsed
            .host_str()
            .filter(|_| matches!(parsed.scheme(), "postgres" | "postgresql"))
            .ok_or_else(refused)?;
        Ok(Self {
            name: format!("{host}:{}", parsed.port().unwrap_or(5432)),
            url: SecretString::from(text),
        })
    }
}

/// Redis: one client for the cache, the rate limits and the token revocations. (Named apart from
/// `markets_redis::RedisSettings`, the client's own settings, which [`Settings::redis_client`]
/// makes from this and `[cache]`.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL (`REDIS_URL`): `redis://host:port` for one server, or
    /// `redis-cluster://host:port,host:port,...` (some of the nodes) for a Redis Cluster. Unset:
    /// the cache, rate limits and revocations live in this process.
    pub url: Option<SecretString>,
    /// Prepended to every key (cache entries, rate-limit counts, revocations), so deployments
    /// can share one Redis.
    pub key_prefix: String,
    /// Per-command timeout in milliseconds: past it, a cache read falls through to the database,
    /// a rate-limit check to this process's own counts and a revocation check to the database.
    pub timeout_ms: u64,
}

/// The market cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Entry lifetime in seconds (`CACHE_TTL_SECONDS`).
    pub ttl_secs: u64,
    /// Whether `serve` warms the cache.
    pub warm_on_start: bool,
    /// How many markets warming loads (1 to 100).
    pub warm_count: u32,
    /// The change feed's propagation bound in milliseconds (100 to 10000): an instance that has
    /// not heard the database's change feed for this long serves no cache hits, and a write
    /// whose cache update failed waits this long before it answers.
    pub propagation_ms: u64,
    /// Seconds a fence outlives the TTL: room for a read's late write-back and clock skew.
    pub fence_slack_secs: u64,
    /// The most fences an instance keeps; past it, it serves no cache hits until some expire.
    pub max_fences: usize,
}

impl CacheSettings {
    /// How long a fence is kept: longer than any entry written before its change can live.
    pub fn fence_window(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.saturating_add(self.fence_slack_secs))
    }
}

/// Tokens and passwords.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret (`JWT_SECRET`).
    pub jwt_secret: Option<SecretString>,
    /// How long access tokens live, in seconds.
    pub token_lifetime_secs: u64,
    /// argon2id parameters.
    pub password_hashing: markets_auth::HashingSettings,
}

/// The embeddings API. (Named apart from `markets_openai::OpenAiSettings`, the client's own
/// settings, which the wiring makes from this.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// API key (`OPENAI_API_KEY`); without one, search embeds locally.
    pub api_key: Option<SecretString>,
    /// Base URL (`OPENAI_BASE_URL`), for any OpenAI-compatible server.
    pub base_url: Url,
    /// Embedding model.
    pub model: String,
    /// Embedding dimensions; must match the `vector` column.
    pub dimensions: usize,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per indexing call (transient failures only).
    pub max_attempts: u32,
}

/// The background job worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Whether `serve` runs a worker too.
    pub run_in_serve: bool,
    /// Jobs of each kind run at once.
    pub lanes: LaneSettings,
    /// Claim lease, in seconds; renewed every third of it while the job runs.
    pub lease_secs: u64,
    /// Poll interval when idle, in milliseconds.
    pub poll_interval_ms: u64,
    /// Attempts before a job is dead.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Time running jobs get on shutdown, in seconds.
    pub shutdown_grace_secs: u64,
}

/// Jobs of each kind run at once by one worker: every kind has slots of its own.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneSettings {
    /// Notifications of new markets.
    pub notify_market_created: usize,
    /// Indexing runs (each embeds up to `search.index_batch` markets).
    pub index_market_embedding: usize,
    /// Account emails (verification and password reset links), each kind.
    pub account_email: usize,
}

impl LaneSettings {
    /// Each kind with its concurrency.
    pub fn per_kind(self) -> [(JobKind, usize); 4] {
        [
            (JobKind::NotifyMarketCreated, self.notify_market_created),
            (JobKind::IndexMarketEmbedding, self.index_market_embedding),
            (JobKind::SendEmailVerification, self.account_email),
            (JobKind::SendPasswordReset, self.account_email),
        ]
    }
}

/// Where notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyBackend {
    /// The log (development).
    Log,
    /// An SMTP server.
    Smtp,
}

/// Notifications to users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Where they go.
    pub backend: NotifyBackend,
    /// The service's public address, for links.
    pub public_url: Url,
    /// The SMTP server, when `backend = "smtp"`.
    pub smtp: SmtpConfig,
}

/// SMTP connection security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay only).
    None,
    /// STARTTLS, required.
    Starttls,
    /// Implicit TLS.
    Tls,
}

/// The SMTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connection security.
    pub tls: SmtpTls,
    /// Login user.
    pub username: Option<String>,
    /// Login password.
    pub password: Option<SecretString>,
    /// Sender.
    pub from: String,
    /// Per-notice timeout, in milliseconds.
    pub timeout_ms: u64,
}

/// Browser origins allowed to call the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Exact origins: a list, or a comma-separated string.
    #[serde(deserialize_with = "list_or_csv")]
    pub allowed_origins: Vec<String>,
    /// Whether any `http://localhost:*` / `http://127.0.0.1:*` origin is allowed too.
    pub allow_localhost: bool,
}

/// Where rate-limit counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// Redis, shared by every instance.
    Redis,
    /// This process only.
    Memory,
}

/// One rate-limit policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Requests per period.
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
}

/// The forwarding header that the trusted proxies set; the other one is never read, so a
/// client cannot slip its own hops past a proxy that passes that header through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, most load balancers).
    XForwardedFor,
    /// `Forwarded: for=` (RFC 7239).
    Forwarded,
    /// Neither: the peer address is the client, even behind trusted proxies.
    None,
}

/// Rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Where counts live; unset: in Redis when there is one, else in this process.
    pub backend: Option<RateLimitBackend>,
    /// Proxies whose forwarding headers are believed: a list, or a comma-separated string
    /// (as an environment variable gives it).
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one forwarding header the trusted proxies set.
    pub client_ip_header: ClientIpHeader,
    /// IPv6 clients are limited per network of this prefix length (a host is usually given a
    /// whole /64 and can rotate through it).
    pub ipv6_prefix: u8,
    /// `GET /markets/search`, per client IP.
    pub search: PolicySettings,
    /// `POST /auth/login`, per client IP: every attempt.
    pub login: PolicySettings,
    /// `POST /auth/register`, per client IP.
    pub register: PolicySettings,
    /// `POST`, `PATCH` and `DELETE` on markets, per user.
    pub writes: PolicySettings,
    /// The account token routes (`/auth/verify-email`, `/auth/password-reset` and its
    /// confirmation), per client IP.
    pub account_tokens: PolicySettings,
    /// Password reset emails asked for, per email address.
    pub password_reset_email: PolicySettings,
    /// Failed logins per account; successes spend nothing.
    pub login_failures: LoginFailureSettings,
}

/// The budgets of failed logins per account (see `markets_application::login`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFailureSettings {
    /// Per account and client address: what one address may guess.
    pub per_client: PolicySettings,
    /// Per account, all addresses together: what many addresses may guess.
    pub per_account: PolicySettings,
}

impl LoginFailureSettings {
    /// The login flow's budgets.
    pub fn budgets(&self) -> markets_application::login::FailureBudgets {
        markets_application::login::FailureBudgets {
            per_client: self.per_client.policy("login_failures_client"),
            per_account: self.per_account.policy("login_failures_account"),
        }
    }

    /// Whether one address within `per_client` could spend `per_account` by itself (and so
    /// lock the owner out alone): unless it allows fewer failures, refilling no faster.
    fn one_client_can_spend_the_account(&self) -> bool {
        let (client, account) = (&self.per_client, &self.per_account);
        // Refilling no faster: client.period / client.limit >= account.period / account.limit.
        let slower = u128::from(client.period_ms) * u128::from(account.limit)
            >= u128::from(account.period_ms) * u128::from(client.limit);
        client.limit >= account.limit || !slower
    }
}

/// A list given as a list (files) or as one comma-separated string (environment variables).
fn list_or_csv<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => text.split(',').map(|item| item.trim().to_owned()).collect(),
    };
    items
        .iter()
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(serde::de::Error::custom))
        .collect()
}

impl PolicySettings {
    /// The domain policy named `name`.
    pub fn policy(&self, name: &str) -> markets_domain::ratelimit::RatePolicy {
        markets_domain::ratelimit::RatePolicy::new(
            name,
            self.limit,
            Duration::from_millis(self.period_ms),
        )
    }
}

/// Which embedder search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingChoice {
    /// OpenAI when an API key is configured, else the model when `search.model_dir` holds
    /// one, else local.
    Auto,
    /// The OpenAI-compatible API (needs `openai.api_key`).
    Openai,
    /// all-MiniLM-L6-v2 in process (needs `search.model_dir`): semantic, 384 dimensions.
    Minilm,
    /// The local lexical hashing embedder.
    Local,
}

/// Semantic search and its index.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// Which embedder.
    pub provider: EmbeddingChoice,
    /// The unpacked all-MiniLM-L6-v2 model (`scripts/model.sh` provisions it and prints where).
    pub model_dir: Option<PathBuf>,
    /// Budget for a query's embedding, in milliseconds.
    pub query_timeout_ms: u64,
    /// Markets claimed, embedded (one provider call) and stored (one write) per indexing run.
    pub index_batch: usize,
    /// How long an indexing run's claim lasts, in seconds: longer than a run can take.
    pub index_lease_secs: u64,
    /// Idle indexer polling interval, in milliseconds.
    pub index_interval_ms: u64,
}

/// The metrics endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// A listener of its own for `/metrics` (and nothing else), which the public listener then
    /// does not serve: the scrape port stays off the load balancer. Unset: `/metrics` is served
    /// on `server.bind_addr` beside the API.
    pub bind_addr: Option<SocketAddr>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// EnvFilter directives (`RUST_LOG`).
    pub filter: String,
    /// Output format (`LOG_FORMAT`).
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Configuration that cannot be used, said in one line.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file, a variable or a value did not parse. (Not a `#[source]`: the message already
    /// holds it, and error reports would print it twice.)
    #[error("invalid configuration: {0}")]
    Parse(config::ConfigError),
    /// A value parsed but breaks a rule.
    #[error("invalid configuration: {key}: {problem}")]
    Invalid {
        /// The configuration key (and its environment variable).
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl From<config::ConfigError> for SettingsError {
    fn from(error: config::ConfigError) -> Self {
        Self::Parse(error)
    }
}

/// Well-known environment variables and the keys they set.
const ENV_KEYS: [(&str, &str); 12] = [
    ("RATE_LIMIT_SEARCH_PER_MINUTE", "rate_limit.search.limit"),
    ("RATE_LIMIT_LOGIN_PER_MINUTE", "rate_limit.login.limit"),
    ("CACHE_TTL_SECONDS", "cache.ttl_secs"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("JWT_SECRET", "auth.jwt_secret"),
    ("OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("MARKETS_MODEL_DIR", "search.model_dir"),
    ("BIND_ADDR", "server.bind_addr"),
    ("RUST_LOG", "log.filter"),
    ("LOG_FORMAT", "log.format"),
];

/// The IPv6 prefix lengths accepted for keying clients: shorter ones would put whole
/// providers behind one budget.
const IPV6_PREFIXES: std::ops::RangeInclusive<u8> = 32..=128;

impl Settings {
    /// Loads settings for the process environment.
    ///
    /// # Errors
    /// On an unknown `APP_ENV`, a malformed file or variable, or a value that breaks a rule.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(&std::env::vars().collect())
    }

    /// Loads settings from the variables in `vars` (so tests need not touch the process env).
    /// Empty variables count as unset.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let var = |name: &str| vars.get(name).filter(|value| !value.is_empty()).cloned();
        let environment = match var("APP_ENV") {
            None => Environment::Development,
            Some(name) => parse_environment(&name)?,
        };
        let mut builder = Config::builder()
            .add_source(File::from_str(
                include_str!("../../../config/default.toml"),
                FileFormat::Toml,
            ))
            .add_source(File::from_str(
                environment.embedded_overrides(),
                FileFormat::Toml,
            ));
        if let Some(dir) = var("MARKETS_CONFIG_DIR").map(PathBuf::from) {
            for name in ["default", environment.as_str()] {
                builder = builder.add_source(File::from(dir.join(name)).required(false));
            }
        }
        for (key, value) in generic_overrides(vars) {
            builder = builder.set_override(key, value.as_str())?;
        }
        for (name, key) in ENV_KEYS {
            builder = builder.set_override_option(key, var(name))?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, problem: &str| {
            Err(SettingsError::Invalid {
                key,
                problem: problem.to_owned(),
            })
        };
        bounds::check(self)?;
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        let database = self.database.url.expose_secret();
        if !["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|scheme| database.starts_with(scheme))
        {
            return invalid(
                "database.url (DATABASE_URL)",
                "must be a postgres://, postgresql:// or sqlite: URL",
            );
        }
        if !self.database.replica_urls.is_empty() && database.starts_with("sqlite:") {
            return invalid(
                "database.replica_urls",
                "needs a PostgreSQL primary (database.url is an SQLite file)",
            );
        }
        if self.database.max_replica_lag_ms < 100 {
            return invalid("database.max_replica_lag_ms", "must be at least 100");
        }
        if let Some(url) = &self.redis.url
            && markets_redis::RedisConnection::check_url(url.expose_secret()).is_err()
        {
            return invalid(
                "redis.url (REDIS_URL)",
                "must be a redis:// or redis-cluster://host:port,host:port,... URL",
            );
        }
        if self.redis.url.is_none() && self.rate_limit.backend == Some(RateLimitBackend::Redis) {
            return invalid(
                "rate_limit.backend",
                "is \"redis\" but no Redis is configured (REDIS_URL)",
            );
        }
        if !(1..=100).contains(&self.cache.warm_count) {
            return invalid("cache.warm_count", "must be between 1 and 100");
        }
        if !(100..=10_000).contains(&self.cache.propagation_ms) {
            return invalid("cache.propagation_ms", "must be between 100 and 10000");
        }
        if self.search.provider == EmbeddingChoice::Openai && self.openai.api_key.is_none() {
            return invalid(
                "openai.api_key (OPENAI_API_KEY)",
                "must be set when search.provider is \"openai\"",
            );
        }
        if self.search.provider == EmbeddingChoice::Minilm && self.search.model_dir.is_none() {
            return invalid(
                "search.model_dir (MARKETS_MODEL_DIR)",
                "must be set when search.provider is \"minilm\"",
            );
        }
        let failures = &self.rate_limit.login_failures;
        for (key, policy) in [
            ("rate_limit.search", &self.rate_limit.search),
            ("rate_limit.login", &self.rate_limit.login),
            ("rate_limit.register", &self.rate_limit.register),
            ("rate_limit.writes", &self.rate_limit.writes),
            ("rate_limit.account_tokens", &self.rate_limit.account_tokens),
            (
                "rate_limit.password_reset_email",
                &self.rate_limit.password_reset_email,
            ),
            ("rate_limit.login_failures.per_client", &failures.per_client),
            (
                "rate_limit.login_failures.per_account",
                &failures.per_account,
            ),
        ] {
            if policy.limit == 0 || policy.period_ms == 0 {
                return invalid(key, "limit and period_ms must be at least 1");
            }
        }
        if !IPV6_PREFIXES.contains(&self.rate_limit.ipv6_prefix) {
            return invalid("rate_limit.ipv6_prefix", "must be between 32 and 128");
        }
        if failures.one_client_can_spend_the_account() {
            return invalid(
                "rate_limit.login_failures",
                "per_client must allow fewer failures than per_account and refill no faster, \
                 so that one address cannot lock an account",
            );
        }
        if self.search.index_batch == 0 {
            return invalid("search.index_batch", "must be at least 1");
        }
        if self.search.index_lease_secs == 0 {
            return invalid("search.index_lease_secs", "must be at least 1");
        }
        if self.jobs.lease_secs == 0 {
            return invalid("jobs.lease_secs", "must be at least 1");
        }
        let lanes = &self.jobs.lanes;
        for (key, concurrency) in [
            (
                "jobs.lanes.notify_market_created",
                lanes.notify_market_created,
            ),
            (
                "jobs.lanes.index_market_embedding",
                lanes.index_market_embedding,
            ),
            ("jobs.lanes.account_email", lanes.account_email),
        ] {
            if concurrency == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.openai.dimensions == 0 {
            return invalid("openai.dimensions", "must be at least 1");
        }
        Ok(())
    }

    /// The Redis client's settings, shared by the cache, the rate limiter and the revocations,
    /// if a Redis is configured. The entry lifetime is the cache's (`cache.ttl_secs`).
    pub fn redis_client(&self) -> Option<markets_redis::RedisSettings> {
        let url = self.redis.url.as_ref()?;
        Some(markets_redis::RedisSettings {
            url: url.expose_secret().to_owned(),
            key_prefix: self.redis.key_prefix.clone(),
            ttl: Duration::from_secs(self.cache.ttl_secs),
            command_timeout: Duration::from_millis(self.redis.timeout_ms),
        })
    }

    /// Where rate-limit counts live: as configured, else in Redis when there is one.
    pub fn rate_limit_backend(&self) -> RateLimitBackend {
        self.rate_limit.backend.unwrap_or(match self.redis.url {
            Some(_) => RateLimitBackend::Redis,
            None => RateLimitBackend::Memory,
        })
    }

    /// The SMTP adapter's settings.
    pub fn smtp(&self) -> markets_smtp::SmtpSettings {
        let smtp = &self.notify.smtp;
        let mut settings = markets_smtp::SmtpSettings::new(&smtp.host, &smtp.from);
        settings.port = smtp.port;
        settings.tls = match smtp.tls {
            SmtpTls::None => markets_smtp::TlsMode::None,
            SmtpTls::Starttls => markets_smtp::TlsMode::StartTls,
            SmtpTls::Tls => markets_smtp::TlsMode::Tls,
        };
        settings.username = smtp.username.clone();
        settings.password = smtp.password.clone();
        settings.timeout = Duration::from_millis(smtp.timeout_ms);
        settings
    }
}

fn parse_environment(name: &str) -> Result<Environment, SettingsError> {
    match name {
        "development" => Ok(Environment::Development),
        "test" => Ok(Environment::Test),
        "production" => Ok(Environment::Production),
        _ => Err(SettingsError::Invalid {
            key: "APP_ENV",
            problem: format!("{name:?} is not one of development, test, production"),
        }),
    }
}

/// `MARKETS__SECTION__KEY=value` variables as `section.key` overrides.
fn generic_overrides(vars: &HashMap<String, String>) -> impl Iterator<Item = (String, &String)> {
    vars.iter().filter_map(|(name, value)| {
        let key = name.strip_prefix("MARKETS__")?;
        Some((key.to_lowercase().replace("__", "."), value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(&vars)
    }

    #[test]
    fn any_key_can_be_set_with_a_prefixed_variable() {
        let settings = load(&[("MARKETS__DATABASE__POOL_SIZE", "3")]).unwrap();
        assert_eq!(settings.database.pool_size, 3);
        let message = load(&[("MARKETS__DATABASE__POOL_SIZE", "lots")]).unwrap_err();
        assert!(
            message.to_string().contains("database.pool_size"),
            "{message}"
        );
    }

    #[test]
    fn defaults_load_for_development() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.environment, Environment::Development);
        assert_eq!(settings.server.bind_addr.port(), 8080);
        assert_eq!(settings.log.format, LogFormat::Text);
        assert!(settings.auth.jwt_secret.is_none());
    }

    #[test]
    fn well_known_variables_override_files() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://u:p@db:5432/m"),
            ("BIND_ADDR", "0.0.0.0:9000"),
            ("JWT_SECRET", RANDOM_SECRET),
            ("RUST_LOG", "debug"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1"),
        ])
        .unwrap();
        assert_eq!(
            settings.database.url.expose_secret(),
            "postgres://u:p@db:5432/m"
        );
        assert_eq!(settings.server.bind_addr.port(), 9000);
        assert_eq!(settings.log.filter, "debug");
        assert_eq!(settings.openai.base_url.port(), Some(9999));
        let ttl = load(&[("CACHE_TTL_SECONDS", "42")]).unwrap();
        assert_eq!(ttl.cache.ttl_secs, 42);
        let limits = load(&[
            ("RATE_LIMIT_SEARCH_PER_MINUTE", "7"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "3"),
        ])
        .unwrap();
        assert_eq!(
            (
                limits.rate_limit.search.limit,
                limits.rate_limit.login.limit
            ),
            (7, 3)
        );
    }

    #[test]
    fn the_redis_client_settings_come_from_redis_and_the_ttl_from_cache() {
        let settings = load(&[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("MARKETS__REDIS__KEY_PREFIX", "t:"),
            ("MARKETS__REDIS__TIMEOUT_MS", "250"),
            ("CACHE_TTL_SECONDS", "42"),
        ])
        .unwrap();
        let client = settings.redis_client().unwrap();
        assert_eq!(client.key_prefix, "t:");
        assert_eq!(client.command_timeout, Duration::from_millis(250));
        assert_eq!(client.ttl, Duration::from_secs(42));
        assert!(load(&[]).unwrap().redis_client().is_none());
        // The keys' old home is refused, not silently ignored.
        let moved = load(&[("MARKETS__CACHE__KEY_PREFIX", "t:")]).unwrap_err();
        assert!(moved.to_string().contains("key_prefix"), "{moved}");
    }

    #[test]
    fn a_redis_cluster_url_is_taken_and_a_malformed_one_refused() {
        let cluster = load(&[("REDIS_URL", "redis-cluster://127.0.0.1:7001,127.0.0.1:7002")]);
        assert!(cluster.unwrap().redis_client().is_some());
        let refused = load(&[("REDIS_URL", "redis-cluster://127.0.0.1:7001,oops")]).unwrap_err();
        assert!(refused.to_string().contains("redis.url"), "{refused}");
    }

    #[test]
    fn environment_files_layer_on_defaults() {
        let settings = load(&[("APP_ENV", "test")]).unwrap();
        assert_eq!(settings.database.pool_size, 4);
        assert_eq!(settings.database.wait_timeout_ms, 2000);
    }

    /// What `openssl rand -base64 32` prints.
    const RANDOM_SECRET: &str = "q3N0x8Jb1zV4mR7tK2wY9cL5hF6dG0sA+pE/uTiOjXk=";

    #[test]
    fn production_refuses_a_missing_or_short_jwt_secret() {
        for secret in [None, Some("too short")] {
            let mut vars = vec![("APP_ENV", "production")];
            vars.extend(secret.map(|s| ("JWT_SECRET", s)));
            let message = load(&vars).unwrap_err().to_string();
            assert!(message.contains("JWT_SECRET"), "{message}");
        }
        let settings = load(&[("APP_ENV", "production"), ("JWT_SECRET", RANDOM_SECRET)]).unwrap();
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn weak_jwt_secrets_are_refused_in_every_environment() {
        let repeated = "x".repeat(32);
        for env in ["development", "test", "production"] {
            for weak in [
                "hunter2",
                repeated.as_str(),
                "abcdabcdabcdabcdabcdabcdabcdabcd",
            ] {
                let message = load(&[("APP_ENV", env), ("JWT_SECRET", weak)])
                    .unwrap_err()
                    .to_string();
                assert!(message.contains("JWT_SECRET"), "{env} {weak}: {message}");
                assert!(!message.contains(weak), "the secret leaked: {message}");
            }
        }
    }

    #[test]
    fn the_random_development_secret_is_for_loopback_only() {
        assert!(load(&[("BIND_ADDR", "127.0.0.1:8080")]).is_ok());
        assert!(load(&[("BIND_ADDR", "[::1]:8080")]).is_ok());
        let message = load(&[("BIND_ADDR", "0.0.0.0:8080")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("JWT_SECRET"), "{message}");
        let configured = load(&[("BIND_ADDR", "0.0.0.0:8080"), ("JWT_SECRET", RANDOM_SECRET)]);
        assert!(configured.is_ok());
    }

    #[test]
    fn token_lifetimes_and_hashing_costs_are_bounded() {
        for (var, value, key) in [
            (
                "MARKETS__AUTH__TOKEN_LIFETIME_SECS",
                "0",
                "token_lifetime_secs",
            ),
            (
                "MARKETS__AUTH__TOKEN_LIFETIME_SECS",
                "2592000",
                "token_lifetime_secs",
            ),
            (
                "MARKETS__AUTH__PASSWORD_HASHING__MEMORY_KIB",
                "4096",
                "password_hashing",
            ),
            (
                "MARKETS__AUTH__PASSWORD_HASHING__ITERATIONS",
                "1",
                "password_hashing",
            ),
            (
                "MARKETS__AUTH__PASSWORD_HASHING__PARALLELISM",
                "0",
                "password_hashing",
            ),
            (
                "OPENAI_BASE_URL",
                "http://embeddings.internal/v1",
                "openai.base_url",
            ),
        ] {
            let message = load(&[(var, value)]).unwrap_err().to_string();
            assert!(message.contains(key), "{var}={value}: {message}");
        }
        // OWASP's 46 MiB, one-pass configuration is as good as the default 19 MiB, two passes.
        let settings = load(&[
            ("MARKETS__AUTH__PASSWORD_HASHING__MEMORY_KIB", "47104"),
            ("MARKETS__AUTH__PASSWORD_HASHING__ITERATIONS", "1"),
        ])
        .unwrap();
        assert_eq!(settings.auth.password_hashing.iterations, 1);
    }

    #[test]
    fn the_client_address_settings_parse_and_are_bounded() {
        let defaults = load(&[]).unwrap().rate_limit;
        assert_eq!(defaults.client_ip_header, ClientIpHeader::XForwardedFor);
        assert_eq!(defaults.ipv6_prefix, 64);
        assert!(defaults.trusted_proxies.is_empty());
        let set = load(&[
            ("MARKETS__RATE_LIMIT__CLIENT_IP_HEADER", "forwarded"),
            ("MARKETS__RATE_LIMIT__IPV6_PREFIX", "56"),
        ])
        .unwrap()
        .rate_limit;
        assert_eq!(
            (set.client_ip_header, set.ipv6_prefix),
            (ClientIpHeader::Forwarded, 56)
        );
        for (var, value, key) in [
            (
                "MARKETS__RATE_LIMIT__CLIENT_IP_HEADER",
                "both",
                "client_ip_header",
            ),
            (
                "MARKETS__RATE_LIMIT__IPV6_PREFIX",
                "16",
                "rate_limit.ipv6_prefix",
            ),
            (
                "MARKETS__RATE_LIMIT__IPV6_PREFIX",
                "129",
                "rate_limit.ipv6_prefix",
            ),
            (
                "MARKETS__RATE_LIMIT__WRITES__LIMIT",
                "0",
                "rate_limit.writes",
            ),
        ] {
            let message = load(&[(var, value)]).unwrap_err().to_string();
            assert!(message.contains(key), "{var}={value}: {message}");
        }
    }

    #[test]
    fn replicas_are_a_list_of_postgres_urls_named_without_credentials() {
        let primary = ("DATABASE_URL", "postgres://app@10.0.0.1/markets");
        let none = load(&[primary]).unwrap().database;
        assert!(none.replica_urls.is_empty());
        assert_eq!(none.max_replica_lag_ms, 1000);
        let replicas = "postgres://app:secret@10.0.0.2/markets, postgresql://10.0.0.3:6432/markets";
        let set = load(&[primary, ("MARKETS__DATABASE__REPLICA_URLS", replicas)])
            .unwrap()
            .database;
        let names: Vec<&str> = set.replica_urls.iter().map(ReplicaUrl::name).collect();
        assert_eq!(names, ["10.0.0.2:5432", "10.0.0.3:6432"]);
        assert_eq!(
            set.replica_urls[0].secret().expose_secret(),
            "postgres://app:secret@10.0.0.2/markets"
        );
        for (vars, key) in [
            (
                vec![
                    primary,
                    ("MARKETS__DATABASE__REPLICA_URLS", "redis://10.0.0.2"),
                ],
                "replica_urls",
            ),
            (
                vec![("MARKETS__DATABASE__REPLICA_URLS", "postgres://10.0.0.2/m")],
                "database.replica_urls: needs a PostgreSQL primary",
            ),
            (
                vec![primary, ("MARKETS__DATABASE__MAX_REPLICA_LAG_MS", "10")],
                "database.max_replica_lag_ms",
            ),
        ] {
            let message = load(&vars).unwrap_err().to_string();
            assert!(message.contains(key), "{vars:?}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn bad_values_name_their_key_in_one_line() {
        for (var, value, key) in [
            ("BIND_ADDR", "not-an-address", "server.bind_addr"),
            ("APP_ENV", "staging", "APP_ENV"),
            ("LOG_FORMAT", "xml", "log.format"),
            ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
            ("OPENAI_BASE_URL", "::", "openai.base_url"),
            ("CACHE_TTL_SECONDS", "soon", "cache.ttl_secs"),
            (
                "MARKETS__CACHE__PROPAGATION_MS",
                "50",
                "cache.propagation_ms",
            ),
            (
                "MARKETS__CACHE__PROPAGATION_MS",
                "60000",
                "cache.propagation_ms",
            ),
        ] {
            let message = load(&[(var, value)]).unwrap_err().to_string();
            assert!(message.contains(key), "{var}={value}: {message}");
            assert!(!message.contains('\n'), "more than one line: {message}");
        }
    }

    #[test]
    fn login_failure_budgets_must_not_let_one_address_spend_the_account() {
        let defaults = load(&[]).unwrap().rate_limit.login_failures.budgets();
        assert_eq!(
            (defaults.per_client.limit, defaults.per_account.limit),
            (5, 100)
        );
        const CLIENT: &str = "MARKETS__RATE_LIMIT__LOGIN_FAILURES__PER_CLIENT__";
        const ACCOUNT: &str = "MARKETS__RATE_LIMIT__LOGIN_FAILURES__PER_ACCOUNT__";
        for (name, value) in [
            // As many failures as the account allows, or a faster refill, or none at all.
            (format!("{CLIENT}LIMIT"), "100"),
            (format!("{CLIENT}PERIOD_MS"), "60000"),
            (format!("{ACCOUNT}LIMIT"), "0"),
            (format!("{CLIENT}PERIOD_MS"), "0"),
        ] {
            let message = load(&[(name.as_str(), value)]).unwrap_err().to_string();
            assert!(
                message.contains("rate_limit.login_failures"),
                "{name}={value}: {message}"
            );
        }
        // The same refill rate is still slow enough.
        load(&[
            (format!("{CLIENT}LIMIT").as_str(), "2"),
            (format!("{CLIENT}PERIOD_MS").as_str(), "72000"),
        ])
        .unwrap();
    }
}
