//! Single flight: concurrent reads of one market share one query, so a burst of cache misses
//! on a hot key costs the database one read, not hundreds.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use markets_domain::RepositoryError;
use markets_domain::market::{Market, MarketId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

type Outcome = Result<Option<Market>, Arc<RepositoryError>>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

/// The reads in flight, by market.
#[derive(Clone, Default)]
pub(super) struct Flights(Arc<Mutex<HashMap<MarketId, Flight>>>);

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Flights").field(&self.lock().len()).finish()
    }
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<MarketId, Flight>> {
        // Every critical section is one map operation: a panic cannot leave it half-done.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the read of `id` in flight, or starts one with `load`.
    pub(super) async fn join(
        &self,
        id: MarketId,
        load: impl FnOnce() -> BoxFuture<'static, Result<Option<Market>, RepositoryError>>,
    ) -> Result<Option<Market>, RepositoryError> {
        let flight = self
            .lock()
            .entry(id)
            .or_insert_with(|| {
                load()
                    .map(|result| result.map_err(Arc::new))
                    .boxed()
                    .shared()
            })
            .clone();
        let outcome = flight.clone().await;
        self.land(id, &flight);
        outcome.map_err(|error| match &*error {
            RepositoryError::Unavailable { service, .. } => {
                RepositoryError::unavailable(service, error.clone())
            }
            RepositoryError::Unexpected(_) => RepositoryError::unexpected(error.clone()),
        })
    }

    /// Forgets the read of `id` in flight: called after a write, so that reads starting after
    /// it never join a read that started before it.
    pub(super) fn forget(&self, id: MarketId) {
        self.lock().remove(&id);
    }

    fn land(&self, id: MarketId, flight: &Flight) {
        let mut flights = self.lock();
        if flights
            .get(&id)
            .is_some_and(|current| current.ptr_eq(flight))
        {
            flights.remove(&id);
        }
    }
}
