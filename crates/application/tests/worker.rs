//! The job worker over the in-memory outbox, whose clock follows tokio's paused one: jobs run
//! once and complete, transient failures are retried, hopeless ones and exhausted ones are
//! parked dead, and shutdown gives back what it could not finish without counting the attempt;
//! an outcome the queue refuses during an outage is recorded once it answers again. Leases are
//! renewed while a job runs, so a job outlasting its lease stays with its worker, while the job
//! of a worker that is gone is taken over within one lease; and one kind of job never waits for
//! another's slots.
#![allow(clippy::unwrap_used)]

mod support;

use async_trait::async_trait;
use markets_application::handlers::JobHandlers;
use markets_application::wakeups::Polling;
use markets_application::worker::{Worker, WorkerSettings};
use markets_domain::jobs::{
    AccountLinkNotice, JobKind, JobQueue, MarketCreatedNotice, Notifier, NotifyError,
};
use markets_domain::testing::{InMemoryStore, RecordingNotifier};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::{eventually, follow_tokio_clock, handlers, indexer, market, user};
use tokio::sync::watch;

fn settings() -> WorkerSettings {
    WorkerSettings {
        poll_interval: Duration::from_millis(50),
        retry_base: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        shutdown_grace: Duration::from_millis(100),
        ..WorkerSettings::default()
    }
}

/// An empty store whose job queue follows tokio's (paused) clock.
fn fresh_store() -> InMemoryStore {
    let store = InMemoryStore::new();
    follow_tokio_clock(&store);
    store
}

/// Runs a worker over `store` until the returned sender says stop.
fn start(
    store: &InMemoryStore,
    handlers: JobHandlers,
    settings: WorkerSettings,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let worker = Worker::new(store.clone(), Polling, handlers, settings);
    (stop, tokio::spawn(worker.run(stopped)))
}

async fn stop(worker: (watch::Sender<bool>, tokio::task::JoinHandle<()>)) {
    worker.0.send(true).unwrap();
    worker.1.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_new_market_notifies_its_creator_once_and_every_job_completes() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    let id = market(&store, &ann, "Will it rain?").await;
    assert_eq!(store.jobs().len(), 2, "the market scheduled two jobs");
    let notifier = RecordingNotifier::default();
    let worker = start(&store, handlers(&store, &notifier), settings());
    eventually("every job completed", || async { store.jobs().is_empty() }).await;
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "ann@example.com");
    assert_eq!(sent[0].market_name, "Will it rain?");
    assert_eq!(
        sent[0].market_url,
        format!("https://markets.example.com/markets/{id}")
    );
    stop(worker).await;
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_until_it_succeeds() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let notifier = RecordingNotifier::default();
    notifier.fail_next(NotifyError::Unavailable("relay down".into()));
    notifier.fail_next(NotifyError::Unavailable("relay down".into()));
    let worker = start(&store, handlers(&store, &notifier), settings());
    eventually("the retry succeeded", || async { store.jobs().is_empty() }).await;
    assert_eq!(notifier.sent().len(), 1, "sent once, on the third attempt");
    assert!(store.dead(10).await.unwrap().is_empty());
    stop(worker).await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_notification_is_parked_dead_without_retrying() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let notifier = RecordingNotifier::default();
    notifier.fail_next(NotifyError::Rejected("no such mailbox".into()));
    let worker = start(&store, handlers(&store, &notifier), settings());
    eventually("the job is dead", || async {
        !store.dead(10).await.unwrap().is_empty()
    })
    .await;
    let dead = store.dead(10).await.unwrap();
    assert_eq!(dead[0].kind, JobKind::NotifyMarketCreated);
    assert_eq!(dead[0].attempts, 1, "a permanent failure is not retried");
    assert_eq!(dead[0].last_error, "no such mailbox");
    assert!(notifier.sent().is_empty());
    stop(worker).await;
}

#[tokio::test(start_paused = true)]
async fn transient_failures_past_the_last_attempt_park_the_job_dead() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let notifier = RecordingNotifier::default();
    for _ in 0..3 {
        notifier.fail_next(NotifyError::Unavailable("relay down".into()));
    }
    let settings = WorkerSettings {
        max_attempts: 2,
        ..settings()
    };
    let worker = start(&store, handlers(&store, &notifier), settings);
    eventually("the job is dead", || async {
        !store.dead(10).await.unwrap().is_empty()
    })
    .await;
    let dead = store.dead(10).await.unwrap();
    assert_eq!(dead[0].attempts, 2);
    assert!(dead[0].last_error.contains("relay down"), "{dead:?}");
    assert!(notifier.sent().is_empty());
    stop(worker).await;
}

/// A notifier that never answers, and says when it was called.
#[derive(Debug, Default)]
struct Stuck(AtomicBool);

#[async_trait]
impl Notifier for Stuck {
    async fn market_created(&self, _: &MarketCreatedNotice) -> Result<(), NotifyError> {
        self.0.store(true, Ordering::SeqCst);
        std::future::pending().await
    }

    async fn account_link(&self, _: &AccountLinkNotice) -> Result<(), NotifyError> {
        unreachable!("these cases store vouched users: no account email is queued")
    }
}

/// Handlers over `store` that send with `notifier` and index `backlog`.
fn handlers_with(
    store: &InMemoryStore,
    notifier: Arc<dyn Notifier>,
    backlog: Arc<dyn markets_domain::search::IndexBacklog>,
) -> JobHandlers {
    JobHandlers::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        notifier,
        indexer(backlog),
        "https://markets.example.com",
    )
}

/// Starts a worker (with `settings`) whose notification never finishes, and waits until it runs.
async fn stuck_worker(
    store: &InMemoryStore,
    settings: WorkerSettings,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let stuck = Arc::new(Stuck::default());
    let handlers = handlers_with(store, stuck.clone(), Arc::new(support::Backlog::Empty));
    let worker = start(store, handlers, settings);
    eventually("the notification is running", || async {
        stuck.0.load(Ordering::SeqCst)
    })
    .await;
    worker
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_what_it_cannot_finish_without_counting_the_attempt() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let worker = stuck_worker(&store, settings()).await;
    stop(worker).await;
    assert_released_once(&store).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_an_outage_releases_once_the_queue_answers_within_the_grace() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let grace = Duration::from_secs(5);
    let settings = WorkerSettings {
        shutdown_grace: grace,
        ..settings()
    };
    let worker = stuck_worker(&store, settings).await;
    store.set_jobs_down(true);
    let back = store.clone();
    let outage = tokio::spawn(async move {
        // Down through the grace and the first tries of the release.
        tokio::time::sleep(grace + Duration::from_secs(1)).await;
        back.set_jobs_down(false);
    });
    stop(worker).await;
    outage.await.unwrap();
    assert_released_once(&store).await;
}

/// The stuck notification was given back at once, its attempt not counted.
async fn assert_released_once(store: &InMemoryStore) {
    let kind = JobKind::NotifyMarketCreated;
    let released = store
        .claim(kind, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(released.len(), 1, "released at once, not after its lease");
    assert_eq!(released[0].kind, JobKind::NotifyMarketCreated);
    assert_eq!(
        released[0].attempt, 1,
        "the interrupted attempt did not count"
    );
}

/// A notifier that takes the job queue down as it sends (so the attempt's outcome meets an
/// outage), counts its sends, and answers with what `answer` says.
#[derive(Debug)]
struct OutageOnSend {
    store: InMemoryStore,
    sends: AtomicUsize,
    answer: fn() -> Result<(), NotifyError>,
}

#[async_trait]
impl Notifier for OutageOnSend {
    async fn market_created(&self, _: &MarketCreatedNotice) -> Result<(), NotifyError> {
        self.store.set_jobs_down(true);
        self.sends.fetch_add(1, Ordering::SeqCst);
        (self.answer)()
    }

    async fn account_link(&self, _: &AccountLinkNotice) -> Result<(), NotifyError> {
        unreachable!("these cases store vouched users: no account email is queued")
    }
}

/// Starts a worker whose notification takes the queue down, waits until it did, and lets the
/// outage last ten (simulated) seconds before the queue answers again.
async fn through_an_outage(
    store: &InMemoryStore,
    answer: fn() -> Result<(), NotifyError>,
) -> (
    Arc<OutageOnSend>,
    (watch::Sender<bool>, tokio::task::JoinHandle<()>),
) {
    let notifier = Arc::new(OutageOnSend {
        store: store.clone(),
        sends: AtomicUsize::new(0),
        answer,
    });
    let handlers = handlers_with(store, notifier.clone(), Arc::new(support::Backlog::Empty));
    let worker = start(store, handlers, settings());
    eventually("the notification was sent", || async {
        notifier.sends.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    store.set_jobs_down(false);
    (notifier, worker)
}

#[tokio::test(start_paused = true)]
async fn a_success_the_queue_refused_is_recorded_once_it_answers_and_not_run_again() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let (notifier, worker) = through_an_outage(&store, || Ok(())).await;
    eventually("the job completed, well within its lease", || async {
        store.jobs().is_empty()
    })
    .await;
    assert_eq!(notifier.sends.load(Ordering::SeqCst), 1, "not run again");
    stop(worker).await;
}

#[tokio::test(start_paused = true)]
async fn a_failure_the_queue_refused_is_recorded_once_it_answers_instead_of_staying_running() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let rejected = || Err(NotifyError::Rejected("no such mailbox".into()));
    let (notifier, worker) = through_an_outage(&store, rejected).await;
    eventually(
        "the job is dead, not running until its lease ends",
        || async { !store.dead(10).await.unwrap().is_empty() },
    )
    .await;
    let dead = store.dead(10).await.unwrap();
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_str()),
        (1, "no such mailbox")
    );
    assert_eq!(notifier.sends.load(Ordering::SeqCst), 1);
    stop(worker).await;
}

/// A notifier that takes `delay` (simulated) to send, and counts what it sent.
#[derive(Debug)]
struct Slow {
    delay: Duration,
    sent: AtomicUsize,
}

#[async_trait]
impl Notifier for Slow {
    async fn market_created(&self, _: &MarketCreatedNotice) -> Result<(), NotifyError> {
        tokio::time::sleep(self.delay).await;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn account_link(&self, _: &AccountLinkNotice) -> Result<(), NotifyError> {
        unreachable!("these cases store vouched users: no account email is queued")
    }
}

fn short_leases() -> WorkerSettings {
    WorkerSettings {
        lease: Duration::from_secs(3),
        ..settings()
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_outlasting_its_lease_stays_with_its_worker_while_the_heartbeat_renews_it() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    // Seven leases long: without renewals the second worker would take it over and send again.
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(21),
        sent: AtomicUsize::new(0),
    });
    let empty = || Arc::new(support::Backlog::Empty);
    let first = start(
        &store,
        handlers_with(&store, slow.clone(), empty()),
        short_leases(),
    );
    let second = start(
        &store,
        handlers_with(&store, slow.clone(), empty()),
        short_leases(),
    );
    eventually("every job completed", || async { store.jobs().is_empty() }).await;
    assert_eq!(
        slow.sent.load(Ordering::SeqCst),
        1,
        "sent by one worker only"
    );
    stop(first).await;
    stop(second).await;
}

#[tokio::test(start_paused = true)]
async fn the_job_of_a_worker_that_is_gone_is_taken_over_within_one_lease() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    market(&store, &ann, "Will it rain?").await;
    let settings = short_leases();
    let (_, gone) = stuck_worker(&store, settings.clone()).await;
    // Dropped without a shutdown (as a killed process): nothing is released or renewed.
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    let since = tokio::time::Instant::now();
    let notifier = RecordingNotifier::default();
    let worker = start(&store, handlers(&store, &notifier), settings.clone());
    eventually("the notification was sent", || async {
        !notifier.sent().is_empty()
    })
    .await;
    let waited = since.elapsed();
    assert!(
        waited <= settings.lease + settings.poll_interval,
        "taken over after {waited:?}, lease {:?}",
        settings.lease
    );
    stop(worker).await;
}

#[tokio::test(start_paused = true)]
async fn notifications_go_out_while_every_indexing_job_hangs() {
    let store = fresh_store();
    let ann = user(&store, "ann@example.com").await;
    for n in 0..50 {
        market(&store, &ann, &format!("Market {n}")).await;
    }
    let notifier = RecordingNotifier::default();
    let hanging = handlers_with(
        &store,
        Arc::new(notifier.clone()),
        Arc::new(support::Backlog::Stuck),
    );
    let worker = start(&store, hanging, settings());
    eventually("every notification was sent", || async {
        notifier.sent().len() == 50
    })
    .await;
    let index = JobKind::IndexMarketEmbedding;
    let stats = store.stats(Duration::from_secs(60)).await.unwrap();
    let indexing = stats.iter().find(|stats| stats.kind == index).unwrap();
    let lane = settings().lanes.of(index) as u64;
    assert_eq!(
        (indexing.running, indexing.queued),
        (lane, 50 - lane),
        "only the indexing lane's slots hang"
    );
    stop(worker).await;
}
