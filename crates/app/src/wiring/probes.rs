//! Readiness and search-health state shared by the handlers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Readiness results (database, cache) reused for [`ProbeCache::TTL`], so a flood of probes
/// costs the dependencies one check a second; concurrent probes wait for the one running.
#[derive(Debug, Default)]
pub struct ProbeCache {
    last: tokio::sync::Mutex<Option<(std::time::Instant, [bool; 2])>>,
}

impl ProbeCache {
    /// How long a result is reused.
    pub const TTL: Duration = Duration::from_secs(1);

    /// The cached result, or `check`'s if the cached one is older than the TTL.
    pub async fn get_or<F: Future<Output = [bool; 2]>>(
        &self,
        check: impl FnOnce() -> F,
    ) -> [bool; 2] {
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
