//! The hot read statements (offset page, keyset page, text search, nearest neighbours) are
//! prepared once per connection and then only executed: PostgreSQL does not parse and plan them
//! per request. Read from `pg_prepared_statements` on the one connection of a one-connection
//! pool, after each statement ran three times with other values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_domain::market::{
    Description, KeysetPosition, KeysetRequest, MarketFilter, MarketId, MarketName,
    MarketRepository, MarketSort, MarketStatus, NewMarket, PageRequest, PageSize, SearchLimit,
    SearchQuery, SortKey, Volume,
};
use markets_domain::search::{Embedding, VectorIndex};
use markets_postgres::testing::{TestDatabase, prepared_statements};
use markets_postgres::{PgMarketRepository, PgVectorIndex, PoolSettings, build_pool};

const RUNS: i64 = 3;

#[tokio::test]
async fn list_keyset_and_search_statements_are_prepared_once_and_reused() {
    let db = TestDatabase::new().await;
    let creator = db.user("ann").await;
    let pool = build_pool(&PoolSettings {
        max_size: 1,
        ..db.settings().clone()
    })
    .unwrap();
    let markets = PgMarketRepository::new(pool.clone());
    let index = PgVectorIndex::new(pool.clone());
    let mut created = Vec::new();
    for n in 0..5_i64 {
        let new = NewMarket {
            id: MarketId::new(),
            creator_id: creator,
            name: MarketName::parse(&format!("Rain in city {n}")).unwrap(),
            description: Description::parse("Resolves by the weather service.").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::from_cents(100 * n).unwrap(),
        };
        created.push(markets.create(new, &[]).await.unwrap());
    }

    let sort: MarketSort = "-volume".parse().unwrap();
    let size = PageSize::new("limit", 2).unwrap();
    for (run, market) in created.iter().enumerate().take(RUNS as usize) {
        let page = PageRequest::new(u32::try_from(run).unwrap() + 1, size).unwrap();
        let filter = MarketFilter {
            status: Some(MarketStatus::Open),
        };
        markets.find_all(filter, sort, page).await.unwrap();
        let position = KeysetPosition {
            key: SortKey::Volume(market.volume),
            id: market.id,
        };
        let request = KeysetRequest::new(sort, Some(position), size).unwrap();
        markets.find_after(filter, request).await.unwrap();
        let query = SearchQuery::parse(&format!("rain city {run}")).unwrap();
        markets
            .search_text(&query, SearchLimit::DEFAULT)
            .await
            .unwrap();
        let mut values = vec![0.0; 1536];
        values[run] = 1.0;
        index
            .nearest(&Embedding::new(values).unwrap(), 10)
            .await
            .unwrap();
    }

    let prepared = prepared_statements(&pool).await;
    for (statement, marker) in [
        ("offset page", "OFFSET $"),
        ("keyset page", r#""markets"."volume" <= $"#),
        ("text search", "websearch_to_tsquery"),
        ("nearest neighbours", "<=>"),
    ] {
        let found: Vec<_> = prepared
            .iter()
            .filter(|prepared| prepared.statement.contains(marker))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{statement}: one prepared statement containing {marker:?}, among {prepared:#?}"
        );
        assert_eq!(
            found[0].executions, RUNS,
            "{statement}: prepared once, executed {RUNS} times: {:#?}",
            found[0]
        );
    }
}
