//! The job worker on real stores (PostgreSQL, and SQLite where the case is about the queue or
//! the index) with a real SMTP exchange: notifications arrive once per market, transient
//! failures are retried then parked, two workers share a queue, a worker killed mid-way loses
//! nothing and its jobs run again within two short leases, notifications keep flowing while
//! indexing is far behind, and indexing costs one embedding request per batch of new markets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use markets_app::settings::Settings;
use markets_app::wiring::{Components, Infrastructure};
use markets_application::handlers::JobHandlers;
use markets_application::indexer;
use markets_application::wakeups::Polling;
use markets_application::worker::{Worker, WorkerSettings};
use markets_domain::auth::PasswordHash;
use markets_domain::jobs::{
    AccountLinkNotice, JobKind, JobQueue, KindStats, MarketCreatedNotice, Notifier, NotifyError,
};
use markets_domain::market::{Description, MarketDraft, MarketName, MarketStatus, Volume};
use markets_domain::permission::{Actor, Role};
use markets_domain::search::{
    Embedding, EmbeddingError, EmbeddingProvider, IndexPacing, IndexService,
};
use markets_domain::user::{DisplayName, Email, NewUser, UserId};
use markets_postgres::testing::TestDatabase;
use markets_redis::testing::shared_settings;
use markets_smtp::testing::{ReceivedMail, SmtpSink};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Which database a case runs on.
#[derive(Debug, Clone, Copy)]
enum Store {
    Postgres,
    Sqlite,
}

/// A database of the case's own: a PostgreSQL clone of the migrated template, or a SQLite file
/// in a temporary folder. Dropped with the case.
struct Database {
    url: String,
    _postgres: Option<TestDatabase>,
    _folder: Option<tempfile::TempDir>,
}

impl Database {
    async fn new(store: Store) -> Self {
        match store {
            Store::Postgres => {
                let db = TestDatabase::new().await;
                Self {
                    url: db.settings().url.expose_secret().to_owned(),
                    _postgres: Some(db),
                    _folder: None,
                }
            }
            Store::Sqlite => {
                let folder = tempfile::tempdir().unwrap();
                let file = folder.path().join("markets.db");
                Self {
                    url: format!("sqlite:{}", file.display()),
                    _postgres: None,
                    _folder: Some(folder),
                }
            }
        }
    }

    fn is_postgres(&self) -> bool {
        self._postgres.is_some()
    }
}

struct World {
    db: Database,
    sink: SmtpSink,
    settings: Settings,
    components: Components,
    actor: Actor,
}

/// The environment of the binary (and of the in-process components) for `db` and `sink`:
/// PostgreSQL with the shared Redis, or SQLite with everything in process.
fn vars(db: &Database, sink: &SmtpSink, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let redis = shared_settings();
    let port = sink.port().to_string();
    let shared: Vec<(&str, &str)> = if db.is_postgres() {
        vec![
            ("REDIS_URL", redis.url.as_str()),
            ("MARKETS__REDIS__KEY_PREFIX", redis.key_prefix.as_str()),
        ]
    } else {
        Vec::new()
    };
    [
        ("APP_ENV", "test"),
        ("DATABASE_URL", db.url.as_str()),
        ("MARKETS__NOTIFY__BACKEND", "smtp"),
        ("MARKETS__NOTIFY__PUBLIC_URL", "https://markets.example.com"),
        ("MARKETS__NOTIFY__SMTP__HOST", "127.0.0.1"),
        ("MARKETS__NOTIFY__SMTP__PORT", port.as_str()),
        ("MARKETS__JOBS__RETRY_BASE_MS", "20"),
        ("MARKETS__JOBS__RETRY_MAX_MS", "100"),
        ("MARKETS__JOBS__POLL_INTERVAL_MS", "200"),
    ]
    .into_iter()
    .chain(shared)
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The markets' creator, stored through the components' own repository.
async fn creator(components: &Components) -> UserId {
    let new = NewUser {
        id: UserId::new(),
        email: Email::parse("creator@example.com").unwrap(),
        display_name: DisplayName::parse("creator").unwrap(),
        password_hash: PasswordHash::new("not a real hash"),
        role: Role::User,
        email_verified: true,
    };
    components.infra.ports().users.create(new).await.unwrap().id
}

async fn world_on(store: Store, extra: &[(&str, &str)]) -> World {
    // Installed before anything records, so the cases can read what was recorded.
    markets_app::telemetry::metrics_handle();
    let db = Database::new(store).await;
    let sink = SmtpSink::start().await;
    let settings = Settings::load_from(&vars(&db, &sink, extra)).unwrap();
    let components = Components::build(&settings).await.unwrap();
    components.infra.store().migrate(&settings).await.unwrap();
    let actor = Actor::User {
        id: creator(&components).await,
        role: Role::User,
    };
    World {
        db,
        sink,
        settings,
        components,
        actor,
    }
}

async fn world(extra: &[(&str, &str)]) -> World {
    world_on(Store::Postgres, extra).await
}

impl World {
    async fn create_markets(&self, count: usize) -> Vec<String> {
        let mut names = Vec::new();
        for n in 0..count {
            let name = format!("Market number {n}");
            let draft = MarketDraft {
                name: MarketName::parse(&name).unwrap(),
                description: Description::parse("").unwrap(),
                status: MarketStatus::Open,
                volume: Volume::ZERO,
            };
            self.components
                .state
                .markets()
                .create(&self.actor, draft)
                .await
                .unwrap();
            names.push(name);
        }
        names
    }

    fn infra(&self) -> &Infrastructure {
        &self.components.infra
    }

    /// Runs an in-process worker until the returned sender says stop.
    fn start_worker(&self) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        let worker = self.infra().worker(&self.settings.jobs);
        (stop, tokio::spawn(worker.run(stopped)))
    }

    /// Runs a worker over this world's stores with its own `notifier` and indexing `embedder`,
    /// paced by `settings`, until the returned sender says stop.
    fn start_custom_worker(
        &self,
        notifier: Arc<dyn Notifier>,
        embedder: Arc<dyn EmbeddingProvider>,
        settings: WorkerSettings,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let ports = self.infra().ports();
        let pacing = IndexPacing {
            batch: self.settings.search.index_batch,
            lease: Duration::from_secs(120),
        };
        let handlers = JobHandlers::new(
            ports.markets.clone(),
            ports.users.clone(),
            notifier,
            IndexService::new(embedder, ports.backlog.clone(), pacing),
            "https://markets.example.com",
        );
        let worker = Worker::new(ports.jobs.clone(), Polling, handlers, settings);
        let (stop, stopped) = watch::channel(false);
        (stop, tokio::spawn(worker.run(stopped)))
    }

    async fn pending_embeddings(&self) -> u64 {
        self.infra().indexer().pending().await.unwrap()
    }

    async fn stats(&self, kind: JobKind) -> KindStats {
        let stats = self.infra().jobs().stats(Duration::from_secs(60));
        let stats = stats.await.unwrap();
        stats.into_iter().find(|stats| stats.kind == kind).unwrap()
    }
}

async fn stop(worker: (watch::Sender<bool>, tokio::task::JoinHandle<()>)) {
    let _ = worker.0.send(true);
    worker.1.await.unwrap();
}

/// Waits until `done` holds, checking every 10 ms, for at most `limit`; panics with `what`
/// past it.
async fn until<F: Future<Output = bool>>(what: &str, limit: Duration, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn keys(messages: &[ReceivedMail]) -> Vec<String> {
    messages
        .iter()
        .map(|mail| mail.header("X-Idempotency-Key").unwrap())
        .collect()
}

fn distinct(messages: &[ReceivedMail]) -> usize {
    keys(messages).into_iter().collect::<HashSet<_>>().len()
}

/// Waits for `count` distinct notifications; a bound turns a hang into a failure.
async fn notifications(sink: &SmtpSink, count: usize) -> Vec<ReceivedMail> {
    tokio::time::timeout(
        Duration::from_secs(30),
        sink.wait_for(|m| distinct(m) >= count),
    )
    .await
    .expect("notifications did not all arrive")
}

/// Waits until some job is dead, and returns the dead jobs.
async fn dead_jobs(infra: &Infrastructure) -> Vec<markets_domain::jobs::DeadJob> {
    let any_dead = async {
        loop {
            let dead = infra.jobs().dead(10).await.unwrap();
            if !dead.is_empty() {
                return dead;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), any_dead)
        .await
        .expect("no job died")
}

async fn queue_is_empty(infra: &Infrastructure) -> bool {
    let stats = infra.jobs().stats(Duration::from_secs(60)).await.unwrap();
    stats
        .iter()
        .all(|kind| kind.queued + kind.running + kind.dead == 0)
}

#[tokio::test]
async fn every_new_market_notifies_its_creator_once() {
    let world = world(&[]).await;
    let names = world.create_markets(3).await;
    let (stop, worker) = world.start_worker();
    let messages = notifications(&world.sink, 3).await;
    until("every job is done", Duration::from_secs(30), || {
        queue_is_empty(world.infra())
    })
    .await;
    let _ = stop.send(true);
    worker.await.unwrap();

    assert_eq!(messages.len(), 3, "one notification per market");
    for mail in &messages {
        assert_eq!(mail.to, ["creator@example.com"]);
        let subject = mail.header("Subject").unwrap();
        let name = names
            .iter()
            .find(|name| subject.contains(name.as_str()))
            .unwrap();
        assert!(mail.body().contains(name.as_str()), "{}", mail.body());
        assert!(mail.body().contains("https://markets.example.com/markets/"));
    }
    let notify = world.stats(JobKind::NotifyMarketCreated).await;
    assert_eq!(notify.completed, 3, "{notify:?}");
    let metrics = markets_app::telemetry::render_metrics(world.infra().store());
    for series in [
        "jobs_queue_depth{kind=\"notify_market_created\",state=\"queued\"}",
        "job_wait_seconds_bucket{kind=\"notify_market_created\"",
        "job_run_seconds_bucket{kind=\"index_market_embedding\"",
        "embeddings_computed_total",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_hopeless_jobs_parked_for_operators() {
    let world = world(&[("MARKETS__JOBS__MAX_ATTEMPTS", "3")]).await;
    // Two temporary refusals: the third attempt gets through.
    world.sink.reject_next(2, 451);
    world.create_markets(1).await;
    let (stop, worker) = world.start_worker();
    notifications(&world.sink, 1).await;

    // Three refusals exhaust the attempts: the job is dead, and stays so.
    world.sink.reject_next(3, 451);
    world.create_markets(1).await;
    let dead = dead_jobs(world.infra()).await;
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].last_error.contains("could not be sent"),
        "{}",
        dead[0].last_error
    );

    // An operator retries it: it goes through.
    assert_eq!(world.infra().jobs().retry_dead(None).await.unwrap(), 1);
    notifications(&world.sink, 2).await;
    let _ = stop.send(true);
    worker.await.unwrap();
    assert!(world.infra().jobs().dead(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried() {
    let world = world(&[("MARKETS__JOBS__MAX_ATTEMPTS", "5")]).await;
    world.sink.reject_next(1, 550);
    world.create_markets(1).await;
    let (stop, worker) = world.start_worker();
    let dead = dead_jobs(world.infra()).await;
    let _ = stop.send(true);
    worker.await.unwrap();
    assert_eq!(dead[0].attempts, 1, "a 5xx reply is final");
    assert!(world.sink.messages().is_empty());
}

#[tokio::test]
async fn two_workers_share_one_queue_without_doing_a_job_twice() {
    let world = world(&[]).await;
    world.create_markets(30).await;
    let (stop_a, worker_a) = world.start_worker();
    let (stop_b, worker_b) = world.start_worker();
    let messages = notifications(&world.sink, 30).await;
    let _ = (stop_a.send(true), stop_b.send(true));
    worker_a.await.unwrap();
    worker_b.await.unwrap();
    assert_eq!(messages.len(), 30, "no notification sent twice");
}

/// The lease of the crash test's workers, in seconds.
const CRASH_LEASE_SECS: u64 = 2;

/// A `markets worker` process sending to the SMTP server on `smtp_port`.
fn spawn_worker(world: &World, smtp_port: u16) -> Child {
    let lease = CRASH_LEASE_SECS.to_string();
    let port = smtp_port.to_string();
    Command::new(env!("CARGO_BIN_EXE_markets"))
        .arg("worker")
        .env_clear()
        .envs(vars(
            &world.db,
            &world.sink,
            &[
                ("MARKETS__JOBS__LEASE_SECS", lease.as_str()),
                ("MARKETS__JOBS__LANES__NOTIFY_MARKET_CREATED", "2"),
                ("MARKETS__NOTIFY__SMTP__PORT", port.as_str()),
                // Longer than the case: a send to a silent server holds its job until the kill.
                ("MARKETS__NOTIFY__SMTP__TIMEOUT_MS", "60000"),
                ("RUST_LOG", "warn"),
            ],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A server that accepts connections and never says a word (not even SMTP's greeting), holding
/// them open until dropped; returns its port.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    (port, server)
}

/// A worker process is killed (SIGKILL: no shutdown, its leases left behind) while it holds
/// two notifications (sending to a server that never answers); a second worker delivers every
/// notification, the two it held within two leases of the kill.
async fn a_killed_worker_s_jobs_run_again_within_two_leases(store: Store) {
    let world = world_on(store, &[]).await;
    let total = 40;
    world.create_markets(total).await;

    let (silent, _server) = silent_server().await;
    let mut first = spawn_worker(&world, silent);
    until(
        "the first worker holds two notifications",
        Duration::from_secs(30),
        || async { world.stats(JobKind::NotifyMarketCreated).await.running == 2 },
    )
    .await;
    first.kill().unwrap();
    let killed = Instant::now();
    first.wait().unwrap();

    let mut second = spawn_worker(&world, world.sink.port());
    let messages = notifications(&world.sink, total).await;
    let recovered = killed.elapsed();
    second.kill().unwrap();
    second.wait().unwrap();

    let delivered = distinct(&messages);
    let duplicates = messages.len() - delivered;
    println!(
        "crash test ({store:?}): {total} markets, 2 held at kill -9, all {delivered} delivered \
         {recovered:?} after it, {duplicates} duplicates (lease {CRASH_LEASE_SECS} s)"
    );
    assert_eq!(delivered, total, "every market notified");
    let bound = Duration::from_secs(2 * CRASH_LEASE_SECS);
    assert!(
        recovered <= bound,
        "the killed worker's jobs ran again after {recovered:?}"
    );
}

#[tokio::test]
async fn a_killed_worker_s_jobs_run_again_within_two_leases_on_postgres() {
    a_killed_worker_s_jobs_run_again_within_two_leases(Store::Postgres).await;
}

#[tokio::test]
async fn a_killed_worker_s_jobs_run_again_within_two_leases_on_sqlite() {
    a_killed_worker_s_jobs_run_again_within_two_leases(Store::Sqlite).await;
}

/// Counts the notices it is given.
#[derive(Debug, Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl Notifier for Counting {
    async fn market_created(&self, _: &MarketCreatedNotice) -> Result<(), NotifyError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn account_link(&self, _: &AccountLinkNotice) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// An embedding provider at its slowest: it answers nothing until the case opens it, then unit
/// vectors. Counts its calls.
#[derive(Debug)]
struct Gated {
    open: watch::Sender<bool>,
    calls: AtomicUsize,
}

impl Gated {
    fn closed() -> Arc<Self> {
        Arc::new(Self {
            open: watch::channel(false).0,
            calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl EmbeddingProvider for Gated {
    fn dimensions(&self) -> usize {
        1536
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        let mut unit = vec![0.0; 1536];
        unit[0] = 1.0;
        Ok(texts
            .iter()
            .map(|_| Embedding::new(unit.clone()).unwrap())
            .collect())
    }
}

/// 2,000 new markets, an embedding provider that does not answer: every notification still
/// goes out, while not one embedding is stored (indexing holds only its own lane's slots); once
/// the provider answers, the index catches up.
async fn notifications_complete_while_indexing_is_far_behind(store: Store) {
    const MARKETS: usize = 2000;
    let world = world_on(store, &[]).await;
    world.create_markets(MARKETS).await;
    let gated = Gated::closed();
    let notifier = Arc::new(Counting::default());
    let settings = WorkerSettings {
        poll_interval: Duration::from_millis(100),
        ..WorkerSettings::default()
    };
    let index_lane = settings.lanes.of(JobKind::IndexMarketEmbedding);
    let worker = world.start_custom_worker(notifier.clone(), gated.clone(), settings);

    until(
        "every notification went out",
        Duration::from_secs(120),
        || async { notifier.0.load(Ordering::SeqCst) == MARKETS },
    )
    .await;
    assert_eq!(
        world.pending_embeddings().await,
        MARKETS as u64,
        "none embedded"
    );
    let calls = gated.calls.load(Ordering::SeqCst);
    assert!(calls <= index_lane, "{calls} embedding calls waiting");
    let indexing = world.stats(JobKind::IndexMarketEmbedding).await;
    assert!(
        indexing.queued >= (MARKETS - index_lane) as u64,
        "{indexing:?}"
    );

    gated.open.send_replace(true);
    until("the index caught up", Duration::from_secs(120), || async {
        world.pending_embeddings().await == 0
    })
    .await;
    stop(worker).await;
    assert_eq!(notifier.0.load(Ordering::SeqCst), MARKETS, "each sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_complete_while_indexing_is_far_behind_on_postgres() {
    notifications_complete_while_indexing_is_far_behind(Store::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_complete_while_indexing_is_far_behind_on_sqlite() {
    notifications_complete_while_indexing_is_far_behind(Store::Sqlite).await;
}

/// The embeddings endpoint of an OpenAI-compatible API: one vector of the requested size per
/// input text.
#[derive(Debug, Clone, Copy)]
struct Embeddings;

impl Respond for Embeddings {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let dimensions = body["dimensions"].as_u64().unwrap() as usize;
        let input = body["input"].as_array().unwrap();
        let data: Vec<Value> = (0..input.len())
            .map(|index| {
                let mut vector = vec![0.0_f32; dimensions];
                vector[index % dimensions] = 1.0;
                json!({"object": "embedding", "index": index, "embedding": vector})
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }))
    }
}

/// The texts of every embeddings request `server` received.
async fn embedding_requests(server: &MockServer) -> Vec<usize> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|request| request.url.path() == "/v1/embeddings")
        .map(|request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            body["input"].as_array().map_or(0, Vec::len)
        })
        .collect()
}

/// With the OpenAI adapter, N new markets indexed by two workers (each with two indexing
/// slots, every job a run) and the background sweep at once cost ceil(N / index_batch)
/// embedding requests, plus the one retry of a request the API failed; every market's text is
/// sent once.
async fn new_markets_cost_one_embedding_request_per_batch(store: Store) {
    const MARKETS: usize = 100;
    const BATCH: usize = 16;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(Embeddings)
        .mount(&server)
        .await;
    let base_url = format!("{}/v1", server.uri());
    let batch = BATCH.to_string();
    let world = world_on(
        store,
        &[
            ("OPENAI_API_KEY", "sk-test-0123456789"),
            ("OPENAI_BASE_URL", base_url.as_str()),
            ("MARKETS__SEARCH__INDEX_BATCH", batch.as_str()),
        ],
    )
    .await;
    world.create_markets(MARKETS).await;

    let workers = [world.start_worker(), world.start_worker()];
    let sweep = indexer::spawn(world.infra().indexer().clone(), Duration::from_millis(50));
    until(
        "every market is embedded",
        Duration::from_secs(60),
        || async { world.pending_embeddings().await == 0 },
    )
    .await;
    sweep.abort();
    for worker in workers {
        stop(worker).await;
    }

    let requests = embedding_requests(&server).await;
    let texts: usize = requests.iter().skip(1).sum();
    println!(
        "{MARKETS} markets, batch {BATCH} ({store:?}): {} embedding requests {requests:?}",
        requests.len()
    );
    assert_eq!(
        texts, MARKETS,
        "every market's text sent once (after the failed request)"
    );
    assert!(
        requests.len() <= MARKETS.div_ceil(BATCH) + 1,
        "{} requests for {MARKETS} markets",
        requests.len()
    );
}

#[tokio::test]
async fn new_markets_cost_one_embedding_request_per_batch_on_postgres() {
    new_markets_cost_one_embedding_request_per_batch(Store::Postgres).await;
}

#[tokio::test]
async fn new_markets_cost_one_embedding_request_per_batch_on_sqlite() {
    new_markets_cost_one_embedding_request_per_batch(Store::Sqlite).await;
}
