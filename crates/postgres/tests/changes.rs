//! The cache change feed on PostgreSQL: every committed new version and deletion reaches the
//! fence book, those committed while the listener was away included, and the feed vouches for
//! the book only while its heartbeats come back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel::sql_types::Integer;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use markets_domain::cache::{ChangeFeed, FenceBook};
use markets_domain::market::MarketId;
use markets_domain::market::{
    Description, Market, MarketName, MarketPatch, MarketRepository, MarketStatus, NewMarket, Volume,
};
use markets_postgres::testing::TestDatabase;
use markets_postgres::{Background, ChangeFeedSettings, PgChangeFeed, PgMarketRepository};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct World {
    db: TestDatabase,
    markets: PgMarketRepository,
    book: Arc<FenceBook>,
}

async fn world() -> World {
    let db = TestDatabase::new().await;
    World {
        markets: PgMarketRepository::new(db.pool()),
        book: Arc::new(FenceBook::new(Duration::from_secs(600), 1000)),
        db,
    }
}

impl World {
    async fn create(&self) -> Market {
        let new = NewMarket {
            id: MarketId::new(),
            creator_id: self.db.user(&format!("u{}", MarketId::new())).await,
            name: MarketName::parse("Fenced").unwrap(),
            description: Description::parse("").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
        };
        self.markets.create(new, &[]).await.unwrap()
    }

    async fn rename(&self, market: &Market) -> Market {
        let patch = MarketPatch {
            name: Some(MarketName::parse("Renamed").unwrap()),
            ..MarketPatch::default()
        };
        let updated = self.markets.update(market.id, market.version, patch, &[]);
        updated.await.unwrap().unwrap()
    }

    fn feed(&self) -> (PgChangeFeed, Background) {
        let settings = ChangeFeedSettings {
            url: self.db.settings().url.clone(),
            propagation: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(5),
        };
        PgChangeFeed::spawn(settings, self.book.clone())
    }

    async fn connect(&self) -> AsyncPgConnection {
        let url = self.db.settings().url.expose_secret();
        AsyncPgConnection::establish(url).await.unwrap()
    }

    /// The listener's server session.
    async fn listener_pid(&self) -> i32 {
        let mut conn = self.connect().await;
        let row = diesel::sql_query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND query LIKE 'SELECT pg_notify%' \
             ORDER BY backend_start DESC LIMIT 1",
        )
        .get_result::<Pid>(&mut conn)
        .await
        .unwrap();
        row.pid
    }
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// Waits up to 10 s for `condition`, checking every 10 ms.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn new_versions_and_deletions_reach_the_book() {
    let world = world().await;
    let (feed, _listener) = world.feed();
    eventually("the feed is current", || feed.is_current()).await;
    let market = world.create().await;
    assert!(world.book.admits(&market), "a create is no change");
    let renamed = world.rename(&market).await;
    eventually("the old version is fenced", || !world.book.admits(&market)).await;
    assert!(world.book.admits(&renamed));
    assert!(world.markets.delete(market.id, None, None).await.unwrap());
    eventually("the deletion is fenced", || !world.book.admits(&renamed)).await;
}

#[tokio::test]
async fn changes_committed_before_the_listener_connected_are_read_back() {
    let world = world().await;
    let (changed, deleted) = (world.create().await, world.create().await);
    world.rename(&changed).await;
    world.markets.delete(deleted.id, None, None).await.unwrap();
    let (feed, _listener) = world.feed();
    eventually("the feed is current", || feed.is_current()).await;
    assert!(!world.book.admits(&changed), "missed the change");
    assert!(!world.book.admits(&deleted), "missed the deletion");
}

#[tokio::test]
async fn a_lost_listener_vouches_for_nothing_until_it_has_caught_up() {
    let world = world().await;
    let market = world.create().await;
    let (feed, _listener) = world.feed();
    eventually("the feed is current", || feed.is_current()).await;

    // Cut the listener off and keep it off, then change the market: the notification goes to
    // no one.
    let listener = world.listener_pid().await;
    world.db.allow_connections(false).await;
    world.db.terminate(listener).await;
    eventually("the lost feed is not current", || !feed.is_current()).await;
    let renamed = world.rename(&market).await;
    assert!(
        world.book.admits(&market),
        "no one could have told the book"
    );

    world.db.allow_connections(true).await;
    eventually("the feed is current again", || feed.is_current()).await;
    assert!(
        !world.book.admits(&market),
        "the reconnected feed missed the change"
    );
    assert!(world.book.admits(&renamed));
}

#[tokio::test]
async fn settling_waits_out_the_propagation_bound() {
    let world = world().await;
    let (feed, _listener) = world.feed();
    let started = Instant::now();
    feed.settle().await;
    assert!(started.elapsed() >= Duration::from_millis(200));
}
