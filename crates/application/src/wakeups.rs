//! [`JobWakeups`] by polling alone, for stores that cannot notify (SQLite, whose writers all live
//! in one process and are few) and for tests.

use async_trait::async_trait;
use markets_domain::jobs::JobWakeups;
use std::time::Duration;

/// Never woken early: every wait lasts its whole timeout, so a worker claims once per poll
/// interval while idle.
#[derive(Debug, Clone, Copy, Default)]
pub struct Polling;

#[async_trait]
impl JobWakeups for Polling {
    async fn wait(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}
