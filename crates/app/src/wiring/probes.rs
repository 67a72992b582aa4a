//! What `/health/ready` checks, and the search-health record it shares with the search handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use markets_postgres::ReplicaState;

use super::shared::CacheBackend;
use super::store::Store;

/// The states `/health/ready` reports; `true` is up.
#[derive(Debug, Clone)]
pub struct Checks {
    /// The database (its primary) answers.
    pub database: bool,
    /// The cache answers (an in-process cache always does).
    pub cache: bool,
    /// Search has not had to fall back to text search within the last minute.
    pub embeddings: bool,
    /// Each read replica as the replicas' own probe last found it (reads go to it or not).
    pub replicas: Vec<ReplicaState>,
}

/// The readiness check: the database and the cache are pinged concurrently (each bounded by its
/// client's timeout) and their result reused for a second; the embedder is judged by
/// search's recent fallbacks, since probing a paid API on every probe would cost money; the
/// replicas by their own probe, which runs all the time.
#[derive(Debug)]
pub struct ReadinessProbe {
    store: Store,
    cache: CacheBackend,
    search_health: Arc<SearchHealth>,
    last: ProbeCache,
}

impl ReadinessProbe {
    /// A probe of `store` and `cache`, reading the embedder's state from `search_health`.
    pub fn new(store: Store, cache: CacheBackend, search_health: Arc<SearchHealth>) -> Self {
        Self {
            store,
            cache,
            search_health,
            last: ProbeCache::default(),
        }
    }

    /// The dependencies' states now (the database's and the cache's from the last second).
    pub async fn check(&self) -> Checks {
        let [database, cache] = self
            .last
            .get_or(|| async {
                let (database, cache) = futures_util::join!(self.store.ping(), self.cache.ping());
                [database, cache]
            })
            .await;
        Checks {
            database,
            cache,
            embeddings: !self.search_health.degraded(),
            replicas: self.store.replicas(),
        }
    }
}

/// Readiness results (database, cache) reused for [`ProbeCache::TTL`], so a flood of probes
/// costs the dependencies one check a second; concurrent probes wait for the one running.
#[derive(Debug, Default)]
struct ProbeCache {
    last: tokio::sync::Mutex<Option<(std::time::Instant, [bool; 2])>>,
}

impl ProbeCache {
    /// How long a result is reused.
    const TTL: Duration = Duration::from_secs(1);

    /// The cached result, or `check`'s if the cached one is older than the TTL.
    async fn get_or<F: Future<Output = [bool; 2]>>(&self, check: impl FnOnce() -> F) -> [bool; 2] {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = *last
            && at.elapsed() < Self::TTL
        {
            return result;
        }
        let result = check().await;
        *last = Some((std::time::Instant::now(), result));
        result
    }
}

/// Remembers when search last fell back to text search.
#[derive(Debug, Default)]
pub struct SearchHealth {
    /// Seconds since the Unix epoch of the last fallback (0: never).
    last_fallback: AtomicU64,
    /// Seconds since the Unix epoch of the last fallback that was logged.
    last_logged: AtomicU64,
}

impl SearchHealth {
    /// How long a fallback marks the embedder as down, and the least time between two logs.
    const WINDOW_SECS: u64 = 60;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }

    /// Records a fallback; true if it should be logged (at most once per window).
    pub fn fell_back(&self) -> bool {
        let now = Self::now();
        self.last_fallback.store(now, Ordering::Relaxed);
        let logged = self.last_logged.load(Ordering::Relaxed);
        now.saturating_sub(logged) >= Self::WINDOW_SECS
            && self
                .last_logged
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether the embedder failed within the window.
    pub fn degraded(&self) -> bool {
        let last = self.last_fallback.load(Ordering::Relaxed);
        last != 0 && Self::now().saturating_sub(last) < Self::WINDOW_SECS
    }
}
