//! `TestApp`: the application on port 0 against its own database, with typed helpers.
//!
//! The suite runs against either adapter set, chosen by `MARKETS_TEST_ADAPTERS`: unset or
//! `server`, PostgreSQL and Redis; `embedded`, a SQLite file with the in-process cache and rate
//! limiter. `scripts/test.sh` runs it once with each. Tests about Redis itself (outages, what
//! several instances share) ask for it with [`TestApp::spawn_with`] in both runs.

use markets_app::settings::{JobSettings, Settings};
use markets_app::startup::Application;
use markets_app::startup::ApplicationHandle;
use markets_app::wiring::Components;
use markets_auth::HashingSettings;
use markets_domain::permission::Role;
use markets_domain::user::{UserId, UserRepository};
use markets_postgres::testing::TestDatabase;
use markets_redis::RedisSettings;
use markets_redis::testing::shared_settings;
use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The JWT secret every test app signs with, so tests can forge tokens.
pub const SECRET: &str = "test secret that is comfortably longer than 32 bytes";

/// Whether this run uses the embedded adapter set.
pub fn embedded() -> bool {
    std::env::var("MARKETS_TEST_ADAPTERS").is_ok_and(|set| set == "embedded")
}

/// A fresh database for one test app.
pub enum TestStore {
    /// A PostgreSQL database cloned from the migrated template.
    Postgres(TestDatabase),
    /// A SQLite file in a folder removed with it (migrated when the app starts).
    Sqlite(tempfile::TempDir),
}

impl TestStore {
    /// A fresh database of this run's kind.
    pub async fn new() -> Self {
        if embedded() {
            Self::Sqlite(tempfile::tempdir().unwrap())
        } else {
            Self::Postgres(TestDatabase::new().await)
        }
    }

    /// Its `DATABASE_URL`.
    pub fn url(&self) -> String {
        match self {
            Self::Postgres(db) => db.settings().url.expose_secret().to_owned(),
            Self::Sqlite(dir) => format!("sqlite:{}", dir.path().join("markets.db").display()),
        }
    }
}

/// A running application and a client for it.
pub struct TestApp {
    pub base: String,
    /// The base URL of `/metrics`'s own listener, when `metrics.bind_addr` is set.
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    pub store: TestStore,
    /// The Redis the app uses (under a key prefix of its own), if any.
    redis: Option<RedisSettings>,
    /// The components the app runs on, to drive background work (indexing) from tests.
    pub components: Components,
    /// Its job settings, for [`TestApp::run_worker`].
    jobs: JobSettings,
    handle: ApplicationHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting at once; the runtime ends with the test anyway.
        drop(self.handle.stop(false));
    }
}

/// A user created through the API, with a token.
pub struct TestUser {
    pub id: UserId,
    pub email: String,
    pub token: String,
}

impl TestApp {
    /// Starts the application on a free port against a fresh database, with this run's
    /// adapter set (the shared test Redis, under a key prefix of its own, or none).
    pub async fn spawn() -> Self {
        Self::spawn_configured(&[]).await
    }

    /// [`TestApp::spawn`] with extra configuration variables.
    pub async fn spawn_configured(extra: &[(&str, &str)]) -> Self {
        Self::spawn_hashing(cheap_hashing(), extra).await
    }

    /// [`TestApp::spawn_configured`], hashing passwords with `hashing` instead of the cheap
    /// parameters every other test app uses.
    pub async fn spawn_hashing(hashing: HashingSettings, extra: &[(&str, &str)]) -> Self {
        let redis = (!embedded()).then(shared_settings);
        Self::start(redis, extra, hashing).await
    }

    /// Starts the application with the cache, rate limits and revocations in `redis`.
    pub async fn spawn_with_redis(redis: RedisSettings) -> Self {
        Self::spawn_with(redis, &[]).await
    }

    /// [`TestApp::spawn_with_redis`] with extra configuration variables.
    pub async fn spawn_with(redis: RedisSettings, extra: &[(&str, &str)]) -> Self {
        Self::start(Some(redis), extra, cheap_hashing()).await
    }

    async fn start(
        redis: Option<RedisSettings>,
        extra: &[(&str, &str)],
        hashing: HashingSettings,
    ) -> Self {
        let store = TestStore::new().await;
        let url = store.url();
        let redis_vars = redis.iter().flat_map(|redis| {
            [
                ("REDIS_URL", redis.url.as_str()),
                ("MARKETS__REDIS__KEY_PREFIX", redis.key_prefix.as_str()),
            ]
        });
        let vars: HashMap<String, String> = [
            ("APP_ENV", "test"),
            ("DATABASE_URL", url.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("JWT_SECRET", SECRET),
        ]
        .into_iter()
        .chain(redis_vars)
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut settings = Settings::load_from(&vars).unwrap();
        if markets_app::wiring::is_sqlite(&settings.database.url) {
            markets_app::commands::migrate(&settings).await.unwrap();
        }
        settings.auth.password_hashing = hashing;
        let components = Components::build(&settings).await.unwrap();
        // As `markets serve` does: the fresh index takes the provider's dimensions.
        components.state.search().fit_dimensions().await.unwrap();
        // Unless a test pointed the app at a Redis of its own choosing (e.g. one that is down).
        let configured = settings.redis.url.as_ref().map(|url| url.expose_secret());
        if redis
            .as_ref()
            .is_some_and(|redis| Some(redis.url.as_str()) == configured)
        {
            cache_serving(&components).await;
        }
        let application = Application::build(&settings, &components).unwrap();
        let base = format!("http://{}", application.address());
        let metrics_base = application
            .metrics_address()
            .map(|address| format!("http://{address}"));
        let handle = application.handle();
        tokio::spawn(application.run_until_stopped());
        Self {
            base,
            metrics_base,
            client: reqwest::Client::new(),
            store,
            redis,
            components,
            jobs: settings.jobs.clone(),
            handle,
        }
    }

    /// Runs the job worker, as `markets serve` does beside the API, until the returned sender
    /// is dropped (tests that send mail need it; the others leave jobs queued).
    pub fn run_worker(&self) -> tokio::sync::watch::Sender<bool> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = self.components.infra.worker(&self.jobs);
        tokio::spawn(worker.run(stopped));
        stop
    }

    /// The Redis this app was started with ([`TestApp::spawn_with`]).
    pub fn redis(&self) -> &RedisSettings {
        self.redis
            .as_ref()
            .expect("this test app has no Redis: start it with TestApp::spawn_with")
    }

    /// Runs the search indexer until nothing is pending (what `serve`'s background indexer
    /// does on its own), so that searches see every market; markets another runner (a job)
    /// holds are left to it, and waited for.
    pub async fn settle(&self) {
        let indexer = self.components.infra.indexer();
        while indexer.pending().await.unwrap() > 0 {
            if indexer.index_pending().await.unwrap() == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// `GET path`, anonymous.
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None, None).await
    }

    /// Registers a user through the API.
    pub async fn register(&self, email: &str, password: &str, display_name: &str) -> Response {
        let body = json!({ "email": email, "password": password, "display_name": display_name });
        self.request(Method::POST, "/api/v1/auth/register", None, Some(body))
            .await
    }

    /// Logs in through the API.
    pub async fn login(&self, email: &str, password: &str) -> Response {
        let body = json!({ "email": email, "password": password });
        self.request(Method::POST, "/api/v1/auth/login", None, Some(body))
            .await
    }

    /// Sets a user's role directly in the database (as `markets create-admin` or an admin would).
    pub async fn set_role(&self, id: UserId, role: Role) {
        let users = &self.components.infra.ports().users;
        users.update_role(id, role, None).await.unwrap().unwrap();
    }

    /// A registered, logged-in user with `role`.
    pub async fn user(&self, name: &str, role: Role) -> TestUser {
        let email = format!("{name}@example.com");
        let registered = body(self.register(&email, "password123", name).await, 201).await;
        let id: UserId = registered["data"]["id"].as_str().unwrap().parse().unwrap();
        if role != Role::User {
            self.set_role(id, role).await;
        }
        let login = body(self.login(&email, "password123").await, 200).await;
        let token = login["data"]["access_token"].as_str().unwrap().to_owned();
        TestUser { id, email, token }
    }

    /// Creates a market through the API as `user`; returns its JSON.
    pub async fn market(&self, user: &TestUser, fields: Value) -> Value {
        let response = self
            .request(
                Method::POST,
                "/api/v1/markets",
                Some(&user.token),
                Some(fields),
            )
            .await;
        body(response, 201).await["data"].clone()
    }
}

/// Real argon2id, but cheap: tests hash many passwords. The queue is the default one, with
/// more slots.
/// Waits (up to 10 s) until the cache answers and its hits may be served: with Redis, once the
/// change feed has caught up, which a fresh instance does within moments of starting.
pub async fn cache_serving(components: &Components) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !components.infra.cache().ping().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn cheap_hashing() -> HashingSettings {
    HashingSettings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
        max_concurrent: 4,
        ..HashingSettings::default()
    }
}

/// Asserts the status and returns the JSON body.
pub async fn body(response: Response, status: u16) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(
        actual,
        StatusCode::from_u16(status).unwrap(),
        "body: {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts an error response in the contract's envelope; returns its body.
pub async fn error(response: Response, status: u16, code: &str) -> Value {
    let json = body(response, status).await;
    assert_eq!(json["success"], false, "{json}");
    assert_eq!(json["code"], code, "{json}");
    assert!(
        json["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    json
}

/// The `field`s listed in a validation error's details.
pub fn detail_fields(json: &Value) -> Vec<String> {
    json["details"]
        .as_array()
        .map(|details| {
            details
                .iter()
                .map(|d| d["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of header `name`, if present and text.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The fields of a user as the API shows one, sorted: no password hash, no token epoch.
pub const USER_KEYS: [&str; 6] = [
    "created_at",
    "display_name",
    "email",
    "email_verified",
    "id",
    "role",
];

/// The keys of a JSON object, sorted.
pub fn keys(json: &Value) -> Vec<String> {
    let mut keys: Vec<String> = json
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {json}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Asserts a 422 `validation_failed` whose details name exactly `fields` (in any order), each
/// with a message; returns its body.
pub async fn invalid(response: Response, fields: &[&str]) -> Value {
    let json = error(response, 422, "validation_failed").await;
    let mut actual = detail_fields(&json);
    actual.sort();
    let mut expected: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(actual, expected, "{json}");
    for detail in json["details"].as_array().unwrap() {
        assert!(
            detail["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
    json
}

/// Captures, from now on, every `security` event and every line of the request log (its span,
/// at info, carries the request id), from any test, as JSON lines; tests pick theirs by
/// request id.
pub fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let _ = tracing_subscriber::registry()
            .with(EnvFilter::new(
                "security=info,markets_app::http::middleware=info",
            ))
            .with(markets_app::telemetry::json_lines(move || {
                Sink(sink.clone())
            }))
            .try_init();
        log
    })
    .clone()
}

/// The lines captured so far, parsed.
pub fn log_lines() -> Vec<Value> {
    let log = capture_logs();
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
