//! How workers learn of new jobs on PostgreSQL: `LISTEN jobs` on a connection of its own (the
//! `jobs` table's trigger sends `NOTIFY jobs` on every insert), behind the [`JobWakeups`] port.

use async_trait::async_trait;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;
use markets_domain::RepositoryError;
use markets_domain::jobs::JobWakeups;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use tokio::sync::Mutex;

use crate::error::{SERVICE, from_connect, from_query};

/// Waits for `NOTIFY jobs` on a connection of its own, so idle workers wake as soon as a job is
/// enqueued anywhere; callers still poll as a safety net.
pub struct JobListener {
    connection: AsyncPgConnection,
}

impl std::fmt::Debug for JobListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobListener").finish_non_exhaustive()
    }
}

impl JobListener {
    /// Connects and listens.
    ///
    /// # Errors
    /// If the database cannot be reached.
    pub async fn connect(url: &SecretString) -> Result<Self, RepositoryError> {
        let mut connection = AsyncPgConnection::establish(url.expose_secret())
            .await
            .map_err(from_connect)?;
        diesel_async::SimpleAsyncConnection::batch_execute(&mut connection, "LISTEN jobs")
            .await
            .map_err(from_query)?;
        Ok(Self { connection })
    }

    /// Waits until a job is enqueued (`Ok(true)`) or `timeout` passes (`Ok(false)`).
    ///
    /// # Errors
    /// If the connection is lost: connect a new listener.
    pub async fn wait(&mut self, timeout: Duration) -> Result<bool, RepositoryError> {
        let notifications = self.connection.notifications_stream();
        let mut notifications = std::pin::pin!(notifications);
        match tokio::time::timeout(timeout, notifications.next()).await {
            Err(_) => Ok(false),
            Ok(Some(Ok(_))) => Ok(true),
            Ok(Some(Err(error))) => Err(from_query(error)),
            Ok(None) => Err(RepositoryError::unavailable(
                SERVICE,
                "the listening connection closed",
            )),
        }
    }
}

/// [`JobWakeups`] by `LISTEN jobs`: the listener connects on first use and again after it fails;
/// while it cannot, a wait lasts its whole timeout, so workers fall back to polling.
pub struct PgJobWakeups {
    url: SecretString,
    listener: Mutex<Option<JobListener>>,
}

impl std::fmt::Debug for PgJobWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgJobWakeups").finish_non_exhaustive()
    }
}

impl PgJobWakeups {
    /// Wakeups from the database at `url`; nothing is contacted until the first wait.
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            listener: Mutex::new(None),
        }
    }
}

#[async_trait]
impl JobWakeups for PgJobWakeups {
    async fn wait(&self, timeout: Duration) {
        let mut listener = self.listener.lock().await;
        if listener.is_none() {
            *listener = JobListener::connect(&self.url).await.ok();
        }
        let Some(connected) = listener.as_mut() else {
            return tokio::time::sleep(timeout).await;
        };
        if connected.wait(timeout).await.is_err() {
            *listener = None;
            tokio::time::sleep(timeout).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDatabase, backend_pid};

    #[tokio::test]
    async fn a_listener_whose_session_the_server_ends_reports_the_database_unavailable() {
        let db = TestDatabase::new().await;
        let mut listener = JobListener::connect(&db.settings().url).await.unwrap();
        let pid = backend_pid(&mut listener.connection).await;
        db.terminate(pid).await;

        // The FATAL 57P01 arrives while nothing runs on the connection: it ends the notification
        // stream as an error, which counts as an outage so that the caller reconnects.
        let error = listener.wait(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(
                error,
                RepositoryError::Unavailable {
                    service: "database",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
