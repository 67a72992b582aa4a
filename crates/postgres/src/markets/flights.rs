//! Single flight: concurrent reads of one market share one query, so a burst of cache misses
//! on a hot key costs the database one read, not hundreds.
//!
//! A finished read is still shared with reads that start within [`LINGER`] of its end: the
//! callers' cache write-back takes a moment, and a burst must not slip a second query into
//! that gap. A write through this repository ends the sharing at once, so this process never
//! serves a read older than its own writes; reads normally find another instance's writes in
//! the shared cache before they get here.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use markets_domain::RepositoryError;
use markets_domain::market::{Market, MarketId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Outcome = Result<Option<Market>, Arc<RepositoryError>>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

/// How long a finished read keeps being shared.
pub(super) const LINGER: Duration = Duration::from_millis(100);

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

/// The reads in flight (or just finished), by market.
#[derive(Clone, Default)]
pub(super) struct Flights(Arc<Mutex<HashMap<MarketId, Entry>>>);

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Flights").field(&self.lock().len()).finish()
    }
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<MarketId, Entry>> {
        // Every critical section is one map operation: a panic cannot leave it half-done.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins the read of `id` in flight (or finished within [`LINGER`]), or starts one with
    /// `load`.
    pub(super) async fn join(
        &self,
        id: MarketId,
        load: impl FnOnce() -> BoxFuture<'static, Result<Option<Market>, RepositoryError>>,
    ) -> Result<Option<Market>, RepositoryError> {
        let flight = {
            let mut flights = self.lock();
            match flights.get(&id).filter(|entry| entry.shareable()) {
                Some(entry) => entry.flight.clone(),
                None => {
                    let flight = load()
                        .map(|result| result.map_err(Arc::new))
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
            RepositoryError::Unexpected(_) => RepositoryError::unexpected(error.clone()),
        })
    }

    /// Forgets the read of `id`: called after a write, so that reads starting after it never
    /// join a read that started before it.
    pub(super) fn forget(&self, id: MarketId) {
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
