//! What the job queue does on SQLite beyond the port's contract (which `contract.rs` runs):
//! claims under concurrency, from one pool and from two (as two processes would).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::future::join;
use markets_domain::jobs::{JobKind, JobQueue, NewJob};
use markets_domain::market::{
    Description, MarketId, MarketName, MarketRepository, MarketStatus, NewMarket, Volume,
};
use markets_sqlite::testing::TestDatabase;
use markets_sqlite::{SqliteJobQueue, SqliteMarketRepository, SqlitePool};
use std::collections::HashSet;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

/// A database holding 50 markets with one job of each kind.
async fn fifty_markets() -> TestDatabase {
    let db = TestDatabase::new().await;
    let creator = db.user("ann").await;
    let markets = SqliteMarketRepository::new(db.pool());
    for _ in 0..50 {
        let new = NewMarket {
            id: MarketId::new(),
            creator_id: creator,
            name: MarketName::parse("Queued").unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
        };
        let jobs = [JobKind::NotifyMarketCreated, JobKind::IndexMarketEmbedding]
            .map(|kind| NewJob::new(kind, new.id));
        markets.create(new, &jobs).await.unwrap();
    }
    db
}

async fn claim_all(queue: SqliteJobQueue) -> Vec<markets_domain::jobs::JobId> {
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
}

fn assert_claimed_once(a: &[markets_domain::jobs::JobId], b: &[markets_domain::jobs::JobId]) {
    let all: HashSet<_> = a.iter().chain(b).copied().collect();
    assert_eq!(all.len(), 100, "every job claimed");
    assert_eq!(a.len() + b.len(), 100, "no job claimed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_get_the_same_job() {
    let db = fifty_markets().await;
    let queue = SqliteJobQueue::new(db.pool());
    let (a, b) = join(
        tokio::spawn(claim_all(queue.clone())),
        tokio::spawn(claim_all(queue)),
    )
    .await;
    assert_claimed_once(&a.unwrap(), &b.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_on_separate_pools_never_get_the_same_job() {
    let db = fifty_markets().await;
    let other = SqlitePool::connect(db.path().to_str().unwrap())
        .await
        .unwrap();
    let (a, b) = join(
        tokio::spawn(claim_all(SqliteJobQueue::new(db.pool()))),
        tokio::spawn(claim_all(SqliteJobQueue::new(other))),
    )
    .await;
    assert_claimed_once(&a.unwrap(), &b.unwrap());
}
