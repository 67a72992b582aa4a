//! What the in-process vector index does beyond the port's contract: it notices embeddings
//! written by another process (here: another pool on the same file), refuses vectors of the
//! wrong size, and its claims on indexing work hold across processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::future::join;
use markets_domain::market::{
    Description, MarketId, MarketName, MarketRepository, MarketStatus, NewMarket, Volume,
};
use markets_domain::search::{Embedding, IndexBacklog, IndexTask, VectorIndex};
use markets_sqlite::testing::TestDatabase;
use markets_sqlite::{SqliteMarketRepository, SqlitePool, SqliteVectorIndex};
use std::collections::HashSet;
use std::time::Duration;

const DIMENSIONS: usize = 1536;

fn along(axis: usize) -> Embedding {
    let mut values = vec![0.0; DIMENSIONS];
    values[axis] = 1.0;
    Embedding::new(values).unwrap()
}

async fn market(db: &TestDatabase, name: &str) -> MarketId {
    let creator = db.user(name).await;
    let new = NewMarket {
        id: MarketId::new(),
        creator_id: creator,
        name: MarketName::parse(name).unwrap(),
        description: Description::parse("").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::ZERO,
    };
    SqliteMarketRepository::new(db.pool())
        .create(new, &[])
        .await
        .unwrap()
        .id
}

/// The pending tasks, under a claim that ends at once.
async fn peek(index: &SqliteVectorIndex) -> Vec<IndexTask> {
    index.claim(100, Duration::ZERO).await.unwrap()
}

async fn embed(index: &SqliteVectorIndex, id: MarketId, embedding: &Embedding) {
    let task = peek(index)
        .await
        .into_iter()
        .find(|task| task.id == id)
        .unwrap();
    let stored = index.store(&[(task, embedding.clone())]).await.unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn the_dimension_is_the_schema_s() {
    let db = TestDatabase::new().await;
    assert_eq!(
        SqliteVectorIndex::new(db.pool())
            .dimensions()
            .await
            .unwrap(),
        DIMENSIONS
    );
}

#[tokio::test]
async fn embeddings_written_elsewhere_are_seen_by_the_next_search() {
    let db = TestDatabase::new().await;
    let here = SqliteVectorIndex::new(db.pool());
    let other_process = SqlitePool::connect(db.path().to_str().unwrap())
        .await
        .unwrap();
    let there = SqliteVectorIndex::new(other_process.clone());

    let first = market(&db, "first").await;
    embed(&here, first, &along(0)).await;
    // Loaded here now, at the current generation.
    assert_eq!(here.nearest(&along(0), 5).await.unwrap()[0].id, first);

    let second = market(&db, "second").await;
    embed(&there, second, &along(1)).await;
    let found = here.nearest(&along(1), 1).await.unwrap();
    assert_eq!(
        found[0].id, second,
        "an embedding stored by another process"
    );

    // Re-embedded elsewhere: the old vector is replaced, not kept beside the new one.
    let rename = markets_domain::market::MarketPatch {
        name: Some(MarketName::parse("first, renamed").unwrap()),
        ..Default::default()
    };
    SqliteMarketRepository::new(other_process)
        .update(first, 1, rename, &[])
        .await
        .unwrap()
        .unwrap();
    embed(&there, first, &along(2)).await;
    let found = here.nearest(&along(2), 5).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].id, first);
    assert!(found[0].score > 0.99 && found[1].score < 0.01, "{found:?}");

    // A delete by the market repository cascades to the embedding, and the copy reloads.
    SqliteMarketRepository::new(db.pool())
        .delete(second, None, None)
        .await
        .unwrap();
    let found = here.nearest(&along(1), 5).await.unwrap();
    assert!(found.iter().all(|hit| hit.id != second), "{found:?}");
}

#[tokio::test]
async fn vectors_of_another_size_are_refused() {
    let db = TestDatabase::new().await;
    let index = SqliteVectorIndex::new(db.pool());
    let id = market(&db, "sized").await;
    let task = peek(&index).await.remove(0);
    let short = Embedding::new(vec![1.0; 3]).unwrap();
    assert!(index.store(&[(task, short.clone())]).await.is_err());
    assert_eq!(peek(&index).await[0].id, id, "still pending");
    assert!(index.nearest(&short, 1).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_on_separate_pools_never_get_the_same_market() {
    let db = TestDatabase::new().await;
    for n in 0..50 {
        market(&db, &format!("m{n}")).await;
    }
    let other = SqlitePool::connect(db.path().to_str().unwrap())
        .await
        .unwrap();
    let claim_all = |index: SqliteVectorIndex| async move {
        let mut mine = Vec::new();
        loop {
            let claimed = index.claim(7, Duration::from_secs(60)).await.unwrap();
            if claimed.is_empty() {
                return mine;
            }
            mine.extend(claimed.into_iter().map(|task| task.id));
        }
    };
    let (a, b) = join(
        tokio::spawn(claim_all(SqliteVectorIndex::new(db.pool()))),
        tokio::spawn(claim_all(SqliteVectorIndex::new(other))),
    )
    .await;
    let (a, b) = (a.unwrap(), b.unwrap());
    let all: HashSet<MarketId> = a.iter().chain(&b).copied().collect();
    assert_eq!(all.len(), 50, "every market claimed");
    assert_eq!(a.len() + b.len(), 50, "no market claimed twice");
}
