//! The FTS5 index follows the markets table: renames and deletes are searchable at once, and
//! no user input is a query syntax error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_domain::market::{
    Description, MarketId, MarketName, MarketPatch, MarketRepository, MarketStatus, NewMarket,
    SearchLimit, SearchQuery, Volume,
};
use markets_sqlite::SqliteMarketRepository;
use markets_sqlite::testing::TestDatabase;

async fn search(markets: &SqliteMarketRepository, query: &str) -> Vec<MarketId> {
    let query = SearchQuery::parse(query).unwrap();
    markets
        .search_text(&query, SearchLimit::DEFAULT)
        .await
        .unwrap()
        .into_iter()
        .map(|hit| hit.market.id)
        .collect()
}

#[tokio::test]
async fn the_text_index_follows_renames_and_deletes() {
    let db = TestDatabase::new().await;
    let markets = SqliteMarketRepository::new(db.pool());
    let new = NewMarket {
        id: MarketId::new(),
        creator_id: db.user("ann").await,
        name: MarketName::parse("Will it rain in Paris").unwrap(),
        description: Description::parse("Weather markets").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::ZERO,
    };
    let id = markets.create(new, &[]).await.unwrap().id;
    assert_eq!(search(&markets, "raining").await, [id], "stemmed");
    assert_eq!(search(&markets, "rain -paris").await, []);
    assert_eq!(search(&markets, "snow or paris").await, [id]);

    let rename = MarketPatch {
        name: Some(MarketName::parse("Will it snow in Oslo").unwrap()),
        ..MarketPatch::default()
    };
    markets.update(id, 1, rename, &[]).await.unwrap().unwrap();
    assert_eq!(search(&markets, "rain").await, []);
    assert_eq!(search(&markets, "oslo").await, [id]);
    assert_eq!(search(&markets, "weather").await, [id], "description kept");

    assert!(markets.delete(id, None, None).await.unwrap());
    assert_eq!(search(&markets, "oslo").await, []);
}

#[tokio::test]
async fn fts_syntax_in_queries_is_just_text() {
    let db = TestDatabase::new().await;
    let markets = SqliteMarketRepository::new(db.pool());
    for query in [
        r#"""#,
        "NEAR(a b)",
        "a AND",
        "*",
        "name:rain",
        "(",
        "-",
        "OR",
        "^x",
    ] {
        assert_eq!(search(&markets, query).await, [], "{query}");
    }
}
