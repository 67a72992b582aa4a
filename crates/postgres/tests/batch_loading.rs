//! Listing markets costs the same number of queries whatever the page size: creators are loaded
//! in one batch, never one query per market.
//!
//! Alone in its test binary because diesel's default instrumentation is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use markets_domain::auth::PasswordHash;
use markets_domain::market::{
    Description, KeysetRequest, MarketFilter, MarketId, MarketName, MarketRepository, MarketSort,
    MarketStatus, NewMarket, PageRequest, PageSize, Volume,
};
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email, NewUser, UserId, UserRepository};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{PgMarketRepository, PgUserRepository};
use std::sync::atomic::{AtomicUsize, Ordering};

static QUERIES: AtomicUsize = AtomicUsize::new(0);

struct CountQueries;

impl Instrumentation for CountQueries {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            QUERIES.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn queries_during<F: Future>(work: F) -> usize {
    let before = QUERIES.load(Ordering::SeqCst);
    work.await;
    QUERIES.load(Ordering::SeqCst) - before
}

#[tokio::test]
async fn list_pages_load_creators_in_one_batch() {
    set_default_instrumentation(|| Some(Box::new(CountQueries))).unwrap();
    let db = TestDatabase::new().await;
    let users = PgUserRepository::new(db.pool());
    let markets = PgMarketRepository::new(db.pool());
    for n in 0..40 {
        let creator = users
            .create(NewUser {
                id: UserId::new(),
                email: Email::parse(&format!("creator{n}@example.com")).unwrap(),
                display_name: DisplayName::parse(&format!("Creator {n}")).unwrap(),
                password_hash: PasswordHash::new("x"),
                role: Role::User,
                email_verified: true,
            })
            .await
            .unwrap();
        let market = NewMarket {
            id: MarketId::new(),
            creator_id: creator.id,
            name: MarketName::parse(&format!("Market {n}")).unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::from_cents(n).unwrap(),
        };
        markets.create(market, &[]).await.unwrap();
    }

    let mut offset_costs = Vec::new();
    let mut keyset_costs = Vec::new();
    for size in [1, 5, 40] {
        let size = PageSize::new("page_size", size).unwrap();
        let page = PageRequest::new(1, size).unwrap();
        let all = MarketFilter::default();
        offset_costs.push(
            queries_during(async {
                let page = markets
                    .find_all(all, MarketSort::default(), page)
                    .await
                    .unwrap();
                assert_eq!(page.items.len(), size.get() as usize);
                assert!(
                    page.items
                        .iter()
                        .all(|m| m.creator.display_name.as_str() != "")
                );
            })
            .await,
        );
        let request = KeysetRequest::new(MarketSort::default(), None, size).unwrap();
        keyset_costs.push(
            queries_during(async {
                let page = markets.find_after(all, request).await.unwrap();
                assert_eq!(page.items.len(), size.get() as usize);
            })
            .await,
        );
    }
    // Count + page + creators for offset paging, page + creators for keyset paging.
    assert_eq!(
        offset_costs,
        vec![3, 3, 3],
        "offset page queries by page size 1, 5, 40"
    );
    assert_eq!(
        keyset_costs,
        vec![2, 2, 2],
        "keyset page queries by page size 1, 5, 40"
    );
}
