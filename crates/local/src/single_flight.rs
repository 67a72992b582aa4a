//! Single flight over any [`MarketRepository`]: concurrent reads of one market share one query,
//! so a burst of cache misses on a hot key costs the database one read, not hundreds.
//!
//! A finished read is still shared with reads that start within [`LINGER`] of its end: the
//! callers' cache write-back takes a moment, and a burst must not slip a second query into
//! that gap. A write through this repository ends the sharing at once, so this process never
//! serves a read older than its own writes; reads normally find another instance's writes in
//! the shared cache before they get here.

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use markets_domain::RepositoryError;
use markets_domain::audit::AuditEvent;
use markets_domain::jobs::NewJob;
use markets_domain::market::{
    CreateMarketError, Creation, IdempotencyKey, KeysetPage, KeysetRequest, Market, MarketFilter,
    MarketId, MarketPatch, MarketRepository, MarketSort, MarketSummary, NewMarket, Page,
    PageRequest, ScoredSummary, SearchLimit, SearchQuery,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Outcome = Result<Option<Market>, Arc<RepositoryError>>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

/// How long a finished read keeps being shared: longer than a write-back takes on a busy
/// machine (100 ms let a second query through on one whose load was five times its cores).
/// Sharing a finished read longer does not serve older data: a write through this process
/// ends it, and another instance's change fences it (the service reads again on its own).
const LINGER: Duration = Duration::from_millis(500);

/// A read, and when it finished.
struct Entry {
    flight: Flight,
    landed: Option<Instant>,
}

impl Entry {
    fn shareable(&self) -> bool {
        self.landed.is_none_or(|landed| landed.elapsed() < LINGER)
    }
}

/// `R` with single flight for [`MarketRepository::find_by_id`]; every other method goes
/// straight to `R`.
pub struct SingleFlight<R> {
    // In an `Arc` because a read in flight is stored and awaited by several callers, so it
    // cannot borrow from the one that started it.
    inner: Arc<R>,
    /// The reads in flight (or just finished), by market.
    flights: Mutex<HashMap<MarketId, Entry>>,
}

impl<R: std::fmt::Debug> std::fmt::Debug for SingleFlight<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight")
            .field("inner", &self.inner)
            .field("flights", &self.lock().len())
            .finish()
    }
}

impl<R> SingleFlight<R> {
    /// `inner`, its reads of one market shared.
    pub fn new(inner: R) -> Self {
        Self {
            inner: Arc::new(inner),
            flights: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<MarketId, Entry>> {
        // Every critical section is one map operation: a panic cannot leave it half-done.
        self.flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets the read of `id`: called after a write, whatever its outcome (a failed write may
    /// still have committed), so that reads starting after it never join a read that started
    /// before it.
    fn forget(&self, id: MarketId) {
        self.lock().remove(&id);
    }

    /// Marks the read finished (a failed read is not shared further) and drops the reads whose
    /// sharing time is over, so the map only holds the reads of the last [`LINGER`].
    fn land(&self, id: MarketId, flight: &Flight, succeeded: bool) {
        let mut flights = self.lock();
        if let Some(entry) = flights
            .get_mut(&id)
            .filter(|entry| entry.flight.ptr_eq(flight))
        {
            if succeeded {
                entry.landed.get_or_insert_with(Instant::now);
            } else {
                flights.remove(&id);
            }
        }
        flights.retain(|_, entry| entry.shareable());
    }
}

#[async_trait]
impl<R: MarketRepository> MarketRepository for SingleFlight<R> {
    async fn create(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
    ) -> Result<Market, CreateMarketError> {
        let id = market.id;
        let created = self.inner.create(market, jobs).await;
        // A read that found no market with this id must not be shared past its creation.
        self.forget(id);
        created
    }

    async fn create_once(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
        key: &IdempotencyKey,
    ) -> Result<Creation, CreateMarketError> {
        let id = market.id;
        let created = self.inner.create_once(market, jobs, key).await;
        self.forget(id);
        created
    }

    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError> {
        self.inner.purge_expired_keys().await
    }

    /// Joins the read of `id` in flight (or finished within `LINGER`), or starts one.
    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        let flight = {
            let mut flights = self.lock();
            match flights.get(&id).filter(|entry| entry.shareable()) {
                Some(entry) => entry.flight.clone(),
                None => {
                    let inner = Arc::clone(&self.inner);
                    let flight = async move { inner.find_by_id(id).await.map_err(Arc::new) }
                        .boxed()
                        .shared();
                    let entry = Entry {
                        flight: flight.clone(),
                        landed: None,
                    };
                    flights.insert(id, entry);
                    flight
                }
            }
        };
        let outcome = flight.clone().await;
        self.land(id, &flight, outcome.is_ok());
        outcome.map_err(|error| match &*error {
            RepositoryError::Unavailable { service, .. } => {
                RepositoryError::unavailable(service, error.clone())
            }
            _ => RepositoryError::unexpected(error.clone()),
        })
    }

    /// Never shared: it must see every write committed before it starts.
    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        self.inner.find_latest(id).await
    }

    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError> {
        self.inner.find_by_ids(ids).await
    }

    async fn find_all(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, RepositoryError> {
        self.inner.find_all(filter, sort, page).await
    }

    async fn find_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, RepositoryError> {
        self.inner.find_after(filter, request).await
    }

    async fn update(
        &self,
        id: MarketId,
        expected_version: u64,
        patch: MarketPatch,
        jobs: &[NewJob],
    ) -> Result<Option<Market>, RepositoryError> {
        let updated = self.inner.update(id, expected_version, patch, jobs).await;
        self.forget(id);
        updated
    }

    async fn delete(
        &self,
        id: MarketId,
        expected_version: Option<u64>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError> {
        let deleted = self.inner.delete(id, expected_version, audit).await;
        self.forget(id);
        deleted
    }

    async fn search_text(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, RepositoryError> {
        self.inner.search_text(query, limit).await
    }
}
