//! The status counters (`market_counts`) against `count(*)`: after concurrent writes through the
//! repository, after bulk statements, after the migration's backfill; and the totals come from
//! them.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Text};
use markets_contract_tests::repository::Repositories;
use markets_contract_tests::repository::concurrent_mixed_workload;
use markets_domain::market::{
    MarketFilter, MarketRepository, MarketSort, MarketStatus, PageRequest,
};

use super::SqliteMarketRepository;
use crate::SqliteUserRepository;
use crate::testing::TestDatabase;

const MIGRATION_UP: &str =
    include_str!("../../../../migrations/sqlite/2026-12-02-000003_market_counts/up.sql");
const MIGRATION_DOWN: &str =
    include_str!("../../../../migrations/sqlite/2026-12-02-000003_market_counts/down.sql");

#[derive(QueryableByName, Debug)]
struct Tally {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    counted: i64,
    #[diesel(sql_type = BigInt)]
    kept: i64,
}

/// Runs `statements` on `db` (as one batch, through the writer gate), then asserts that the
/// counter of every status equals `count(*)` of its markets; returns how many markets there are.
async fn after(db: &TestDatabase, statements: impl Into<String>) -> i64 {
    let statements = statements.into();
    let batch = statements.clone();
    let tallies = db
        .pool()
        .write(move |conn| {
            conn.batch_execute(&batch)?;
            sql_query(
                "SELECT statuses.status,
                        (SELECT count(*) FROM markets WHERE markets.status = statuses.status)
                          AS counted,
                        (SELECT count FROM market_counts WHERE market_counts.status = statuses.status)
                          AS kept
                 FROM (SELECT 'open' AS status UNION ALL SELECT 'closed' UNION ALL SELECT 'resolved')
                   AS statuses",
            )
            .load::<Tally>(conn)
        })
        .await
        .unwrap()
        .unwrap();
    for tally in &tallies {
        assert_eq!(
            tally.kept, tally.counted,
            "{} markets: {statements}",
            tally.status
        );
    }
    tallies.iter().map(|tally| tally.counted).sum()
}

/// Inserts 3000 markets of all statuses by the first user, in one statement.
const BULK_INSERT: &str = "
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
    INSERT INTO markets (id, name, description, status, creator_id, created_at, updated_at)
      SELECT randomblob(16), 'm' || i, '',
             CASE i % 3 WHEN 0 THEN 'open' WHEN 1 THEN 'closed' ELSE 'resolved' END,
             (SELECT id FROM users LIMIT 1), i, i
      FROM n;";

#[tokio::test]
async fn counters_match_count_after_concurrent_mixed_writes() {
    let db = TestDatabase::new().await;
    let repositories = Repositories {
        markets: SqliteMarketRepository::new(db.pool()),
        users: SqliteUserRepository::new(db.pool()),
    };
    concurrent_mixed_workload(&repositories).await;
    assert!(after(&db, "").await > 0, "the workload left no market");
}

#[tokio::test]
async fn bulk_statements_keep_the_counters_and_the_migration_backfills_them() {
    let db = TestDatabase::new().await;
    db.user("ann").await;
    assert_eq!(after(&db, BULK_INSERT).await, 3000);
    let left = after(
        &db,
        "UPDATE markets SET status = CASE status WHEN 'open' THEN 'closed' ELSE 'open' END
           WHERE name LIKE 'm1%';
         UPDATE markets SET version = version + 1 WHERE name LIKE 'm2%';
         DELETE FROM markets WHERE name LIKE 'm3%';",
    )
    .await;
    // The migration run again over existing markets counts them all (its down step drops the
    // counters with their triggers).
    let again = format!("BEGIN IMMEDIATE; {MIGRATION_DOWN} {MIGRATION_UP} COMMIT;");
    assert_eq!(after(&db, again).await, left);
}

#[tokio::test]
async fn list_totals_are_read_from_the_counters() {
    let db = TestDatabase::new().await;
    db.user("ann").await;
    after(&db, BULK_INSERT).await;
    db.pool()
        .write(|conn| {
            conn.batch_execute(
                "UPDATE market_counts SET count = count + 1000 WHERE status = 'open'",
            )
        })
        .await
        .unwrap()
        .unwrap();
    let markets = SqliteMarketRepository::new(db.pool());
    let total = |status| {
        let filter = MarketFilter { status };
        markets.find_all(filter, MarketSort::default(), PageRequest::default())
    };
    assert_eq!(total(None).await.unwrap().total, 4000);
    assert_eq!(total(Some(MarketStatus::Open)).await.unwrap().total, 2000);
    assert_eq!(total(Some(MarketStatus::Closed)).await.unwrap().total, 1000);
}
