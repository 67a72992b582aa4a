//! What the job queue does on PostgreSQL beyond the port's contract (which `contract.rs` runs):
//! `SKIP LOCKED` claims under concurrency, and `LISTEN/NOTIFY` wake-ups.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::future::join;
use markets_domain::jobs::{JobKind, JobQueue, NewJob};
use markets_domain::market::{
    Description, MarketId, MarketName, MarketRepository, MarketStatus, NewMarket, Volume,
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

impl World {
    /// A market with one job of each kind.
    async fn create(&self) -> MarketId {
        let new = NewMarket {
            id: MarketId::new(),
            creator_id: self.creator,
            name: MarketName::parse("Queued").unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
        };
        let jobs = [JobKind::NotifyMarketCreated, JobKind::IndexMarketEmbedding]
            .map(|kind| NewJob::new(kind, new.id));
        self.markets.create(new, &jobs).await.unwrap().id
    }
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let world = world().await;
    for _ in 0..50 {
        world.create().await;
    }
    let claim_all = |queue: PgJobQueue| async move {
        let mut mine = Vec::new();
        for kind in JobKind::ALL {
            loop {
                let batch = queue.claim(kind, 7, LEASE).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                mine.extend(batch.into_iter().map(|job| job.id));
            }
        }
        mine
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
