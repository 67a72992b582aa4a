//! The job worker on real PostgreSQL with a real SMTP exchange: notifications arrive once per
//! market, transient failures are retried then parked, two workers share a queue, and a worker
//! killed mid-way loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_app::settings::Settings;
use markets_app::wiring::{Components, Infrastructure};
use markets_domain::jobs::JobQueue;
use markets_domain::market::{Description, MarketDraft, MarketName, MarketStatus, Volume};
use markets_domain::permission::{Actor, Role};
use markets_postgres::testing::TestDatabase;
use markets_redis::testing::shared_settings;
use markets_smtp::testing::{ReceivedMail, SmtpSink};
use secrecy::ExposeSecret;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::watch;

struct World {
    db: TestDatabase,
    sink: SmtpSink,
    settings: Settings,
    components: Components,
    actor: Actor,
}

fn vars(db: &TestDatabase, sink: &SmtpSink, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let redis = shared_settings();
    let port = sink.port().to_string();
    [
        ("APP_ENV", "test"),
        ("DATABASE_URL", db.settings().url.expose_secret()),
        ("REDIS_URL", redis.url.as_str()),
        ("MARKETS__REDIS__KEY_PREFIX", redis.key_prefix.as_str()),
        ("MARKETS__NOTIFY__BACKEND", "smtp"),
        ("MARKETS__NOTIFY__PUBLIC_URL", "https://markets.example.com"),
        ("MARKETS__NOTIFY__SMTP__HOST", "127.0.0.1"),
        ("MARKETS__NOTIFY__SMTP__PORT", port.as_str()),
        ("MARKETS__JOBS__RETRY_BASE_MS", "20"),
        ("MARKETS__JOBS__RETRY_MAX_MS", "100"),
        ("MARKETS__JOBS__POLL_INTERVAL_MS", "200"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn world(extra: &[(&str, &str)]) -> World {
    let db = TestDatabase::new().await;
    let sink = SmtpSink::start().await;
    let settings = Settings::load_from(&vars(&db, &sink, extra)).unwrap();
    let components = Components::build(&settings).await.unwrap();
    let actor = Actor::User {
        id: db.user("creator").await,
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

    /// Runs an in-process worker until the returned sender says stop.
    fn start_worker(&self) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = watch::channel(false);
        let worker = self.components.infra.worker(&self.settings.jobs);
        (stop, tokio::spawn(worker.run(stopped)))
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
    infra
        .jobs()
        .claim(100, Duration::ZERO)
        .await
        .unwrap()
        .is_empty()
}

#[tokio::test]
async fn every_new_market_notifies_its_creator_once() {
    let world = world(&[]).await;
    let names = world.create_markets(3).await;
    let (stop, worker) = world.start_worker();
    let messages = notifications(&world.sink, 3).await;
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
    assert!(
        queue_is_empty(&world.components.infra).await,
        "every job is done"
    );
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
    let dead = dead_jobs(&world.components.infra).await;
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].last_error.contains("could not be sent"),
        "{}",
        dead[0].last_error
    );

    // An operator retries it: it goes through.
    assert_eq!(
        world
            .components
            .infra
            .jobs()
            .retry_dead(None)
            .await
            .unwrap(),
        1
    );
    notifications(&world.sink, 2).await;
    let _ = stop.send(true);
    worker.await.unwrap();
    assert!(
        world
            .components
            .infra
            .jobs()
            .dead(10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried() {
    let world = world(&[("MARKETS__JOBS__MAX_ATTEMPTS", "5")]).await;
    world.sink.reject_next(1, 550);
    world.create_markets(1).await;
    let (stop, worker) = world.start_worker();
    let dead = dead_jobs(&world.components.infra).await;
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

fn spawn_worker(db: &TestDatabase, sink: &SmtpSink) -> Child {
    Command::new(env!("CARGO_BIN_EXE_markets"))
        .arg("worker")
        .env_clear()
        .envs(vars(
            db,
            sink,
            &[
                ("MARKETS__JOBS__LEASE_SECS", "1"),
                ("MARKETS__JOBS__CONCURRENCY", "2"),
                ("RUST_LOG", "warn"),
            ],
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_worker_killed_mid_way_loses_no_job() {
    let world = world(&[]).await;
    let total = 40;
    world.create_markets(total).await;

    let mut first = spawn_worker(&world.db, &world.sink);
    notifications(&world.sink, 5).await;
    first.kill().unwrap(); // SIGKILL: no shutdown, leases left behind
    first.wait().unwrap();
    let before_restart = world.sink.messages().len();

    let mut second = spawn_worker(&world.db, &world.sink);
    let messages = notifications(&world.sink, total).await;
    second.kill().unwrap();
    second.wait().unwrap();

    let delivered = distinct(&messages);
    let duplicates = messages.len() - delivered;
    println!(
        "crash test: {total} markets, {before_restart} notified before kill -9, \
         {delivered} distinct after restart, {duplicates} duplicates"
    );
    assert_eq!(delivered, total, "every market notified");
}
