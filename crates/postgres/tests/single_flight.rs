//! Concurrent reads of one market cost one query. Alone in its test binary because diesel's
//! default instrumentation, which counts the queries, is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use futures_util::future::join_all;
use markets_domain::market::{
    Description, MarketId, MarketName, MarketPatch, MarketRepository, MarketStatus, NewMarket,
    Volume,
};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{PgMarketRepository, PgUserRepository};
use std::sync::atomic::{AtomicUsize, Ordering};

static MARKET_READS: AtomicUsize = AtomicUsize::new(0);

struct CountMarketReads;

impl Instrumentation for CountMarketReads {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let sql = query.to_string();
            if sql.starts_with("SELECT \"markets\".\"id\"") {
                MARKET_READS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_one_market_share_one_query() {
    set_default_instrumentation(|| Some(Box::new(CountMarketReads))).unwrap();
    let db = TestDatabase::new().await;
    let _users = PgUserRepository::new(db.pool());
    let markets = PgMarketRepository::new(db.pool());
    let creator = db.user("ann").await;
    let market = markets
        .create(
            NewMarket {
                id: MarketId::new(),
                creator_id: creator,
                name: MarketName::parse("Hot market").unwrap(),
                description: Description::parse("").unwrap(),
                status: MarketStatus::Open,
                volume: Volume::ZERO,
            },
            &[],
        )
        .await
        .unwrap();

    let before = MARKET_READS.load(Ordering::SeqCst);
    let reads = join_all((0..200).map(|_| markets.find_by_id(market.id))).await;
    assert!(
        reads
            .iter()
            .all(|read| read.as_ref().unwrap().as_ref() == Some(&market))
    );
    assert_eq!(
        MARKET_READS.load(Ordering::SeqCst) - before,
        1,
        "200 reads, one query"
    );

    // After a write, reads start afresh and see it.
    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    markets
        .update(market.id, market.version, patch, &[])
        .await
        .unwrap();
    let after = markets.find_by_id(market.id).await.unwrap().unwrap();
    assert_eq!(after.status, MarketStatus::Closed);
    assert_eq!(after.version, 2);
}
