//! Concurrent reads of one market cost one read of the store under [`SingleFlight`], and a write
//! through it ends the sharing. The store's reads are counted, and held at a gate so that the
//! concurrent reads are provably all in flight together (no sleeps, no timing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use futures_util::future::join_all;
use futures_util::poll;
use markets_domain::RepositoryError;
use markets_domain::audit::AuditEvent;
use markets_domain::auth::PasswordHash;
use markets_domain::jobs::NewJob;
use markets_domain::market::{
    CreateMarketError, Creation, Description, IdempotencyKey, KeysetPage, KeysetRequest, Market,
    MarketFilter, MarketId, MarketName, MarketPatch, MarketRepository, MarketSort, MarketStatus,
    MarketSummary, NewMarket, Page, PageRequest, ScoredSummary, SearchLimit, SearchQuery, Volume,
};
use markets_domain::permission::Role;
use markets_domain::testing::InMemoryStore;
use markets_domain::user::{DisplayName, Email, NewUser, UserId, UserRepository};
use markets_local::SingleFlight;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::watch;

/// An in-memory store whose `find_by_id` is counted, waits for the gate to open, and fails
/// while `failing` is set.
#[derive(Debug, Clone)]
struct Counted {
    store: InMemoryStore,
    reads: Arc<AtomicUsize>,
    gate: Arc<watch::Sender<bool>>,
    failing: Arc<AtomicBool>,
}

impl Counted {
    fn new(store: InMemoryStore) -> Self {
        Self {
            store,
            reads: Arc::default(),
            gate: Arc::new(watch::Sender::new(true)),
            failing: Arc::default(),
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl MarketRepository for Counted {
    async fn create(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
    ) -> Result<Market, CreateMarketError> {
        MarketRepository::create(&self.store, market, jobs).await
    }

    async fn create_once(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
        key: &IdempotencyKey,
    ) -> Result<Creation, CreateMarketError> {
        self.store.create_once(market, jobs, key).await
    }

    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError> {
        self.store.purge_expired_keys().await
    }

    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.gate.subscribe().wait_for(|open| *open).await.unwrap();
        if self.failing.load(Ordering::SeqCst) {
            return Err(RepositoryError::unavailable("test store", "down"));
        }
        MarketRepository::find_by_id(&self.store, id).await
    }

    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        self.store.find_latest(id).await
    }

    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError> {
        MarketRepository::find_by_ids(&self.store, ids).await
    }

    async fn find_all(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, RepositoryError> {
        self.store.find_all(filter, sort, page).await
    }

    async fn find_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, RepositoryError> {
        self.store.find_after(filter, request).await
    }

    async fn update(
        &self,
        id: MarketId,
        expected_version: u64,
        patch: MarketPatch,
        jobs: &[NewJob],
    ) -> Result<Option<Market>, RepositoryError> {
        self.store.update(id, expected_version, patch, jobs).await
    }

    async fn delete(
        &self,
        id: MarketId,
        expected_version: Option<u64>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError> {
        self.store.delete(id, expected_version, audit).await
    }

    async fn search_text(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, RepositoryError> {
        self.store.search_text(query, limit).await
    }
}

/// A counted store with one user, under single flight.
async fn setup() -> (Counted, SingleFlight<Counted>, UserId) {
    let store = InMemoryStore::new();
    let new = NewUser {
        id: UserId::new(),
        email: Email::parse("ann@example.com").unwrap(),
        display_name: DisplayName::parse("ann").unwrap(),
        password_hash: PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$salt$ann".to_owned()),
        role: Role::User,
        email_verified: true,
    };
    let creator = UserRepository::create(&store, new).await.unwrap();
    let counted = Counted::new(store);
    (counted.clone(), SingleFlight::new(counted), creator.id)
}

fn new_market(creator: UserId) -> NewMarket {
    NewMarket {
        id: MarketId::new(),
        creator_id: creator,
        name: MarketName::parse("Hot market").unwrap(),
        description: Description::parse("").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::ZERO,
    }
}

#[tokio::test]
async fn concurrent_reads_of_one_market_share_one_read() {
    let (counted, markets, creator) = setup().await;
    let market = markets.create(new_market(creator), &[]).await.unwrap();

    counted.gate.send_replace(false);
    let mut reads: Vec<_> = (0..200).map(|_| markets.find_by_id(market.id)).collect();
    for read in &mut reads {
        assert!(poll!(read).is_pending(), "the gate is closed");
    }
    counted.gate.send_replace(true);
    let reads = join_all(reads).await;

    assert!(
        reads
            .iter()
            .all(|read| read.as_ref().unwrap().as_ref() == Some(&market))
    );
    assert_eq!(counted.reads(), 1, "200 reads, one read of the store");
}

#[tokio::test]
async fn every_write_ends_the_sharing() {
    let (counted, markets, creator) = setup().await;
    let new = new_market(creator);
    let id = new.id;

    assert_eq!(markets.find_by_id(id).await.unwrap(), None);
    let market = markets.create(new, &[]).await.unwrap();
    let created = markets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!(created, market, "the read before the create is not shared");
    assert_eq!(counted.reads(), 2);

    let patch = MarketPatch {
        status: Some(MarketStatus::Closed),
        ..MarketPatch::default()
    };
    markets
        .update(id, market.version, patch, &[])
        .await
        .unwrap()
        .unwrap();
    let updated = markets.find_by_id(id).await.unwrap().unwrap();
    assert_eq!((updated.status, updated.version), (MarketStatus::Closed, 2));
    assert_eq!(counted.reads(), 3);

    assert!(markets.delete(id, None, None).await.unwrap());
    assert_eq!(markets.find_by_id(id).await.unwrap(), None);
    assert_eq!(counted.reads(), 4);

    let new = new_market(creator);
    let id = new.id;
    assert_eq!(markets.find_by_id(id).await.unwrap(), None);
    let key = IdempotencyKey::parse("once", "fingerprint").unwrap();
    markets.create_once(new, &[], &key).await.unwrap();
    assert!(
        markets.find_by_id(id).await.unwrap().is_some(),
        "the read before an idempotent create is not shared"
    );
    assert_eq!(counted.reads(), 6);
}

#[tokio::test]
async fn a_failed_read_reaches_all_its_sharers_and_is_not_shared_further() {
    let (counted, markets, creator) = setup().await;
    let market = markets.create(new_market(creator), &[]).await.unwrap();

    counted.failing.store(true, Ordering::SeqCst);
    counted.gate.send_replace(false);
    let mut reads: Vec<_> = (0..3).map(|_| markets.find_by_id(market.id)).collect();
    for read in &mut reads {
        assert!(poll!(read).is_pending(), "the gate is closed");
    }
    counted.gate.send_replace(true);
    for read in join_all(reads).await {
        assert!(matches!(
            read,
            Err(RepositoryError::Unavailable {
                service: "test store",
                ..
            })
        ));
    }
    assert_eq!(counted.reads(), 1);

    counted.failing.store(false, Ordering::SeqCst);
    assert_eq!(markets.find_by_id(market.id).await.unwrap(), Some(market));
    assert_eq!(counted.reads(), 2, "the failure was not kept");
}
