//! The status counters (`market_counts`) against `count(*)`: after concurrent writes through the
//! repository, after bulk statements, after the migration's backfill; the totals come from them;
//! and concurrent creates do not queue behind one counter row.

use diesel::sql_query;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use markets_contract_tests::repository::Repositories;
use markets_contract_tests::repository::concurrent_mixed_workload;
use markets_domain::market::{
    MarketFilter, MarketRepository, MarketSort, MarketStatus, PageRequest,
};

use super::PgMarketRepository;
use crate::PgUserRepository;
use crate::testing::{TestDatabase, backend_pid};

const MIGRATION_UP: &str =
    include_str!("../../../../migrations/postgres/2026-12-02-000003_market_counts/up.sql");
const MIGRATION_DOWN: &str =
    include_str!("../../../../migrations/postgres/2026-12-02-000003_market_counts/down.sql");

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Tally {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    counted: i64,
    #[diesel(sql_type = BigInt)]
    kept: i64,
}

/// Asserts that the counters of every status equal `count(*)` of its markets, and returns how
/// many markets there are.
async fn assert_counts_exact(conn: &mut AsyncPgConnection, when: &str) -> i64 {
    let tallies: Vec<Tally> = sql_query(
        "SELECT statuses.status,
                (SELECT count(*) FROM markets WHERE markets.status = statuses.status) AS counted,
                (SELECT coalesce(sum(count), 0)::int8 FROM market_counts
                  WHERE market_counts.status = statuses.status) AS kept
         FROM unnest(ARRAY['open', 'closed', 'resolved']) AS statuses (status)",
    )
    .load(conn)
    .await
    .unwrap();
    for tally in &tallies {
        assert_eq!(tally.kept, tally.counted, "{} markets {when}", tally.status);
    }
    tallies.iter().map(|tally| tally.counted).sum()
}

#[tokio::test]
async fn counters_match_count_after_concurrent_mixed_writes() {
    let db = TestDatabase::new().await;
    let repositories = Repositories {
        markets: PgMarketRepository::new(db.pool()),
        users: PgUserRepository::new(db.pool()),
    };
    concurrent_mixed_workload(&repositories).await;
    let mut conn = db.pool().get().await.unwrap();
    let held = assert_counts_exact(&mut conn, "after the workload").await;
    assert!(held > 0, "the workload left no market");
}

#[tokio::test]
async fn bulk_statements_keep_the_counters_and_the_migration_backfills_them() {
    let db = TestDatabase::new().await;
    let creator = db.user("ann").await.as_uuid();
    let mut conn = db.pool().get().await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO markets (id, name, description, status, creator_id)
           SELECT gen_random_uuid(), 'm' || n, '', (ARRAY['open', 'closed', 'resolved'])[1 + n % 3],
                  '{creator}'
           FROM generate_series(1, 3000) AS n"
    ))
    .await
    .unwrap();
    assert_eq!(
        assert_counts_exact(&mut conn, "after a bulk insert").await,
        3000
    );
    conn.batch_execute(
        "UPDATE markets SET status = CASE status WHEN 'open' THEN 'closed' ELSE 'open' END
           WHERE name LIKE 'm1%';
         UPDATE markets SET version = version + 1 WHERE name LIKE 'm2%';
         DELETE FROM markets WHERE name LIKE 'm3%';",
    )
    .await
    .unwrap();
    let left = assert_counts_exact(&mut conn, "after bulk updates and a delete").await;

    // The migration run again over existing markets counts them all (its down step drops the
    // counters with their triggers).
    conn.batch_execute(&format!("BEGIN; {MIGRATION_DOWN} {MIGRATION_UP} COMMIT;"))
        .await
        .unwrap();
    assert_eq!(
        assert_counts_exact(&mut conn, "after the backfill").await,
        left
    );

    conn.batch_execute("TRUNCATE markets CASCADE")
        .await
        .unwrap();
    assert_eq!(assert_counts_exact(&mut conn, "after a truncate").await, 0);
}

#[tokio::test]
async fn list_totals_are_read_from_the_counters() {
    let db = TestDatabase::new().await;
    let creator = db.user("ann").await.as_uuid();
    let mut conn = db.pool().get().await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO markets (id, name, description, status, creator_id)
           VALUES (gen_random_uuid(), 'one', '', 'closed', '{creator}');
         UPDATE market_counts SET count = count + 1000 WHERE status = 'open' AND shard = 7;"
    ))
    .await
    .unwrap();
    let markets = PgMarketRepository::new(db.pool());
    let total = |status| {
        let filter = MarketFilter { status };
        markets.find_all(filter, MarketSort::default(), PageRequest::default())
    };
    assert_eq!(total(None).await.unwrap().total, 1001);
    assert_eq!(total(Some(MarketStatus::Open)).await.unwrap().total, 1000);
    assert_eq!(total(Some(MarketStatus::Closed)).await.unwrap().total, 1);
}

#[tokio::test]
async fn concurrent_creates_do_not_wait_for_one_counter_row() {
    let db = TestDatabase::new().await;
    let creator = db.user("ann").await.as_uuid();
    let insert = format!(
        "INSERT INTO markets (id, name, description, creator_id)
           VALUES (gen_random_uuid(), 'concurrent', '', '{creator}');"
    );
    let pool = db.pool();
    let mut first = pool.get().await.unwrap();
    let first_shard = backend_pid(&mut first).await % 16;
    // Connections whose pids share the first one's shard are held aside, not used.
    let mut same_shard = Vec::new();
    let mut second = pool.get().await.unwrap();
    while backend_pid(&mut second).await % 16 == first_shard {
        same_shard.push(second);
        second = pool.get().await.unwrap();
    }
    first
        .batch_execute(&format!("BEGIN; {insert}"))
        .await
        .unwrap();
    // With one counter row per status, this insert would wait for the first one's commit,
    // which comes after it: it would end with a lock timeout instead.
    second
        .batch_execute(&format!("SET lock_timeout = '5s'; {insert}"))
        .await
        .unwrap();
    first.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        assert_counts_exact(&mut first, "after both commits").await,
        2
    );
}
