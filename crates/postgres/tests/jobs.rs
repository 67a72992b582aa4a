//! The outbox and the job queue on a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::future::join;
use markets_domain::jobs::{Failure, JobKind, JobQueue, NewJob};
use markets_domain::market::{
    CreateMarketError, Description, MarketId, MarketName, MarketPatch, MarketRepository,
    MarketStatus, NewMarket, Volume,
};
use markets_domain::user::UserId;
use markets_postgres::testing::TestDatabase;
use markets_postgres::{JobListener, PgJobQueue, PgMarketRepository};
use std::collections::HashSet;
use std::time::Duration;

struct World {
    db: TestDatabase,
    markets: PgMarketRepository,
    queue: PgJobQueue,
    creator: UserId,
}

async fn world() -> World {
    let db = TestDatabase::new().await;
    let creator = db.user("ann").await;
    World {
        markets: PgMarketRepository::new(db.pool()),
        queue: PgJobQueue::new(db.pool()),
        db,
        creator,
    }
}

fn new_market(creator: UserId) -> NewMarket {
    NewMarket {
        id: MarketId::new(),
        creator_id: creator,
        name: MarketName::parse("Queued").unwrap(),
        description: Description::parse("").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::ZERO,
    }
}

fn jobs_for(id: MarketId) -> [NewJob; 2] {
    [
        NewJob {
            kind: JobKind::NotifyMarketCreated,
            market_id: id,
        },
        NewJob {
            kind: JobKind::IndexMarketEmbedding,
            market_id: id,
        },
    ]
}

impl World {
    async fn create(&self) -> MarketId {
        let new = new_market(self.creator);
        let jobs = jobs_for(new.id);
        self.markets.create(new, &jobs).await.unwrap().id
    }
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_market_and_its_jobs_are_stored_together_or_not_at_all() {
    let world = world().await;
    let id = world.create().await;
    let claimed = world.queue.claim(10, LEASE).await.unwrap();
    let kinds: HashSet<JobKind> = claimed.iter().map(|job| job.kind).collect();
    assert_eq!(kinds, JobKind::ALL.into_iter().collect());
    assert!(
        claimed
            .iter()
            .all(|job| job.market_id == id && job.attempt == 1)
    );

    // The jobs are inserted first; the market then fails (unknown creator): neither remains.
    let orphan = new_market(UserId::new());
    let jobs = jobs_for(orphan.id);
    let refused = world.markets.create(orphan.clone(), &jobs).await;
    assert!(matches!(refused, Err(CreateMarketError::UnknownCreator(_))));
    assert!(world.markets.find_by_id(orphan.id).await.unwrap().is_none());
    let expired_leases = world.queue.claim(10, LEASE).await.unwrap();
    assert!(
        expired_leases.is_empty(),
        "jobs of a rolled-back market: {expired_leases:?}"
    );

    // An update of a missing market schedules nothing either.
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    let missing = MarketId::new();
    assert!(
        world
            .markets
            .update(missing, 1, patch, &jobs_for(missing))
            .await
            .unwrap()
            .is_none()
    );
    assert!(world.queue.claim(10, LEASE).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let world = world().await;
    for _ in 0..50 {
        world.create().await;
    }
    let claim_all = |queue: PgJobQueue| async move {
        let mut mine = Vec::new();
        loop {
            let batch = queue.claim(7, LEASE).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|job| job.id));
        }
    };
    let (a, b) = join(
        claim_all(world.queue.clone()),
        claim_all(world.queue.clone()),
    )
    .await;
    let all: HashSet<_> = a.iter().chain(&b).copied().collect();
    assert_eq!(all.len(), 100, "every job claimed");
    assert_eq!(a.len() + b.len(), 100, "no job claimed twice");
}

#[tokio::test]
async fn an_expired_lease_makes_a_job_claimable_and_fences_the_old_attempt() {
    let world = world().await;
    world.create().await;
    let first = world
        .queue
        .claim(1, Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    // The first worker "died": its lease is over, so the job is claimed again.
    let again = world.queue.claim(10, LEASE).await.unwrap();
    let second = again.into_iter().find(|job| job.id == first.id).unwrap();
    assert_eq!(second.attempt, 2);
    // The first attempt finishing late changes nothing...
    world.queue.complete(&first).await.unwrap();
    world
        .queue
        .fail(&first, "late", Failure::Dead)
        .await
        .unwrap();
    assert!(world.queue.dead(10).await.unwrap().is_empty());
    // ...the current one does.
    world.queue.complete(&second).await.unwrap();
    let remaining = world.queue.claim(10, Duration::ZERO).await.unwrap();
    assert!(
        remaining.iter().all(|job| job.id != first.id),
        "completed job came back"
    );
}

#[tokio::test]
async fn failures_retry_then_die_and_operators_can_requeue() {
    let world = world().await;
    world.create().await;
    let jobs = world.queue.claim(10, LEASE).await.unwrap();
    let job = jobs[0].clone();
    world.queue.release(&jobs[1..]).await.unwrap();

    world
        .queue
        .fail(&job, "boom", Failure::RetryIn(Duration::ZERO))
        .await
        .unwrap();
    let retried = world.queue.claim(10, LEASE).await.unwrap();
    let retried: Vec<_> = retried.into_iter().filter(|j| j.id == job.id).collect();
    assert_eq!(retried[0].attempt, 2, "a retry is the next attempt");

    world
        .queue
        .fail(&retried[0], "boom again", Failure::Dead)
        .await
        .unwrap();
    let dead = world.queue.dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (job.id, 2));
    assert_eq!(dead[0].last_error, "boom again");
    assert!(
        world
            .queue
            .claim(10, Duration::ZERO)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != job.id)
    );

    assert_eq!(world.queue.retry_dead(Some(job.id)).await.unwrap(), 1);
    assert!(world.queue.dead(10).await.unwrap().is_empty());
    let requeued = world.queue.claim(10, LEASE).await.unwrap();
    let requeued = requeued.into_iter().find(|j| j.id == job.id).unwrap();
    assert_eq!(requeued.attempt, 1, "attempts start over");
}

#[tokio::test]
async fn released_jobs_are_due_at_once_and_keep_their_attempt_count() {
    let world = world().await;
    world.create().await;
    let jobs = world.queue.claim(10, LEASE).await.unwrap();
    world.queue.release(&jobs).await.unwrap();
    let again = world.queue.claim(10, LEASE).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|job| job.attempt == 1));
}

#[tokio::test]
async fn listeners_wake_when_a_job_is_enqueued() {
    let world = world().await;
    let mut listener = JobListener::connect(&world.db.settings().url)
        .await
        .unwrap();
    assert!(
        !listener.wait(Duration::from_millis(50)).await.unwrap(),
        "nothing yet"
    );
    world.create().await;
    assert!(
        listener.wait(Duration::from_secs(10)).await.unwrap(),
        "notified"
    );
}
