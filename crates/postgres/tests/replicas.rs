//! Read routing on a real streaming replica: a private primary and a `pg_basebackup -R` replica
//! of it. Reads go to the replica while it is caught up; a caller still finds what it just
//! created; a replica whose replay is paused is skipped once it lags past the bound, and used
//! again once it has caught up; a stopped replica costs no failed read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_domain::auth::PasswordHash;
use markets_domain::market::{
    Description, MarketFilter, MarketId, MarketName, MarketRepository, MarketSort, MarketStatus,
    NewMarket, PageRequest, PageSize, Volume,
};
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email, NewUser, UserId, UserRepository};
use markets_postgres::testing::PrivatePostgres;
use markets_postgres::{
    PgMarketRepository, PgPool, PgUserRepository, PoolSettings, PrimaryHistory, ReadRouting,
    build_pool, run_migrations,
};
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A primary, its replica and the folder they live in (removed when dropped).
struct Pair {
    replica: PrivatePostgres,
    primary: PrivatePostgres,
    folder: PathBuf,
}

impl Pair {
    async fn start() -> Self {
        let folder = PathBuf::from("/var/tmp/markets-tests").join(format!(
            "replicas-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let primary = PrivatePostgres::start(&folder.join("primary"));
        run_migrations(&SecretString::from(primary.url()))
            .await
            .unwrap();
        let replica = PrivatePostgres::replica_of(&primary, &folder.join("replica"));
        Self {
            replica,
            primary,
            folder,
        }
    }

    /// Routing over the pair, with no read on the replica until a probe finds it caught up.
    fn routing(&self) -> ReadRouting {
        ReadRouting::new(
            pool(&self.primary.url()),
            vec![("replica".to_owned(), pool(&self.replica.url()))],
        )
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.folder);
        }
    }
}

fn pool(url: &str) -> PgPool {
    build_pool(&PoolSettings {
        url: SecretString::from(url),
        max_size: 4,
        wait_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    })
    .unwrap()
}

async fn creator(routing: &ReadRouting) -> UserId {
    let new = NewUser {
        id: UserId::new(),
        email: Email::parse("ann@example.com").unwrap(),
        display_name: DisplayName::parse("Ann").unwrap(),
        password_hash: PasswordHash::new("not a real hash"),
        role: Role::User,
        email_verified: true,
    };
    let users = PgUserRepository::new(routing.primary().clone());
    users.create(new).await.unwrap().id
}

async fn create(markets: &PgMarketRepository, creator_id: UserId, name: &str) -> MarketId {
    let new = NewMarket {
        id: MarketId::new(),
        creator_id,
        name: MarketName::parse(name).unwrap(),
        description: Description::parse("").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::from_cents(0).unwrap(),
    };
    markets.create(new, &[]).await.unwrap().id
}

/// The names on the first page of every market.
async fn listed(markets: &PgMarketRepository) -> Vec<String> {
    let page = PageRequest::new(1, PageSize::new("page_size", 100).unwrap()).unwrap();
    let found = markets
        .find_all(MarketFilter::default(), MarketSort::default(), page)
        .await
        .unwrap();
    found
        .items
        .into_iter()
        .map(|market| market.name.to_string())
        .collect()
}

/// Probes until `serving` is what the replica's state says (or panics after 20 s).
async fn probe_until(routing: &ReadRouting, history: &mut PrimaryHistory, serving: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ticks = tokio::time::interval(history.interval());
    loop {
        ticks.tick().await;
        routing.probe(history).await;
        let state = routing.states().remove(0);
        if state.serving == serving {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica never {serving}: {state:?}"
        );
    }
}

/// `SELECT pg_wal_replay_pause()` or `_resume()` on the replica.
fn replay(pair: &Pair, action: &str) {
    pair.replica
        .query(&format!("SELECT pg_wal_replay_{action}()"));
}

#[tokio::test]
async fn reads_follow_a_caught_up_replica_and_skip_a_lagging_one() {
    let pair = Pair::start().await;
    // Two routings over the pair: one that tolerates a minute of lag, one 400 ms.
    let (patient, strict) = (pair.routing(), pair.routing());
    let mut patient_history = PrimaryHistory::new(Duration::from_secs(60));
    let mut strict_history = PrimaryHistory::new(Duration::from_millis(400));
    let (lenient, markets) = (
        PgMarketRepository::new(patient.clone()),
        PgMarketRepository::new(strict.clone()),
    );
    let creator_id = creator(&strict).await;
    create(&markets, creator_id, "Replayed everywhere").await;
    probe_until(&patient, &mut patient_history, true).await;
    probe_until(&strict, &mut strict_history, true).await;
    assert_eq!(listed(&lenient).await, ["Replayed everywhere"]);

    // Replay paused: what the primary writes now, the replica does not have.
    replay(&pair, "pause");
    let unseen = create(&markets, creator_id, "Only on the primary").await;
    patient.probe(&mut patient_history).await;
    assert!(patient.states()[0].serving);
    // Lists come from the replica, which lacks the new market...
    assert_eq!(listed(&lenient).await, ["Replayed everywhere"]);
    // ... but the caller finds its own creation, by id and latest.
    let found = lenient.find_by_id(unseen).await.unwrap().unwrap();
    assert_eq!(found.name.to_string(), "Only on the primary");
    assert!(lenient.find_latest(unseen).await.unwrap().is_some());

    // Past its bound the replica is skipped, and lists see the primary.
    probe_until(&strict, &mut strict_history, false).await;
    let state = strict.states().remove(0);
    assert!(
        state.reachable && state.lag > Some(Duration::from_millis(400)),
        "{state:?}"
    );
    assert_eq!(listed(&markets).await.len(), 2);

    // Caught up again, it serves again.
    replay(&pair, "resume");
    probe_until(&strict, &mut strict_history, true).await;
    assert_eq!(listed(&markets).await.len(), 2);
}

#[tokio::test]
async fn a_stopped_replica_costs_no_failed_read_and_serves_again_once_back() {
    let pair = Pair::start().await;
    let routing = pair.routing();
    let markets = PgMarketRepository::new(routing.clone());
    let creator_id = creator(&routing).await;
    create(&markets, creator_id, "Listed").await;
    let mut history = PrimaryHistory::new(Duration::from_millis(400));
    probe_until(&routing, &mut history, true).await;

    pair.replica.stop_fast();
    // The routing still believes in the replica: the read fails there and is run on the
    // primary, and the replica is dropped at once, before any probe.
    assert_eq!(listed(&markets).await, ["Listed"]);
    let state = routing.states().remove(0);
    assert!(!state.serving && !state.reachable, "{state:?}");
    assert_eq!(listed(&markets).await, ["Listed"]);
    routing.probe(&mut history).await;
    assert!(!routing.states()[0].reachable);

    pair.replica.start_again();
    probe_until(&routing, &mut history, true).await;
    assert_eq!(listed(&markets).await, ["Listed"]);
}
