//! Revoked tokens in Redis, with a durable fallback: every instance checks Redis (no database
//! round trip per request); revocations are written to both, and the fallback answers while
//! Redis is unreachable, so an outage neither revives revoked tokens nor locks users out.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fred::prelude::*;
use markets_domain::RepositoryError;
use markets_domain::auth::TokenRevocations;
use std::sync::Arc;
use tracing::warn;

use crate::RedisSettings;
use crate::breaker::Breaker;
use crate::client::RedisConnection;

/// Revocations in Redis (`<prefix>revoked:<jti>`, expiring with the token), backed by `F`.
#[derive(Clone)]
pub struct RedisRevocations<F> {
    client: Client,
    prefix: Arc<str>,
    fallback: F,
    /// Skips Redis for a moment after a failure, so an outage costs checks no command timeout.
    breaker: Arc<Breaker>,
}

impl<F: std::fmt::Debug> std::fmt::Debug for RedisRevocations<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("prefix", &self.prefix)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<F: TokenRevocations> RedisRevocations<F> {
    /// Revocations on `connection`, keyed under the prefix of `settings`.
    pub fn new(connection: &RedisConnection, settings: &RedisSettings, fallback: F) -> Self
    where
        F: Clone,
    {
        let revocations = Self {
            client: connection.client.clone(),
            prefix: settings.key_prefix.as_str().into(),
            fallback,
            breaker: Arc::new(Breaker::for_timeout(settings.command_timeout)),
        };
        // Whenever the connection is (re)made, Redis may be a fresh server that lost every key:
        // refill it from the durable record before checks rely on it again.
        let refill = revocations.clone();
        revocations.client.on_reconnect(move |_| {
            let refill = refill.clone();
            async move {
                if let Err(error) = refill.refill().await {
                    warn!(error = %markets_domain::error::report(&error), "could not refill revocations into Redis");
                }
                Ok(())
            }
        });
        revocations
    }

    /// Writes every unexpired revocation into Redis, in one pipeline.
    async fn refill(&self) -> Result<(), RepositoryError> {
        let active = self.fallback.active().await?;
        if active.is_empty() {
            return Ok(());
        }
        let pipeline = self.client.pipeline();
        for (token_id, expires_at) in &active {
            let until = Expiration::PXAT(expires_at.timestamp_millis());
            let _: () = pipeline
                .set(self.key(token_id), 1, Some(until), None, false)
                .await
                .map_err(|error| RepositoryError::unavailable("cache", error))?;
        }
        pipeline
            .all::<Vec<Value>>()
            .await
            .map(drop)
            .map_err(|error| RepositoryError::unavailable("cache", error))
    }

    fn key(&self, token_id: &str) -> String {
        format!("{}revoked:{token_id}", self.prefix)
    }

    /// Keeps writing the revocation into Redis, backing off, until it lands or the token expires.
    fn retry_in_background(&self, token_id: &str, expires_at: DateTime<Utc>)
    where
        F: Clone,
    {
        let (this, token_id) = (self.clone(), token_id.to_owned());
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(200);
            while Utc::now() < expires_at && this.cache(&token_id, expires_at).await.is_err() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        });
    }

    async fn cache(&self, token_id: &str, expires_at: DateTime<Utc>) -> Result<(), Error> {
        let until = Expiration::PXAT(expires_at.timestamp_millis());
        self.client
            .set(self.key(token_id), 1, Some(until), None, false)
            .await
    }
}

#[async_trait]
impl<F: TokenRevocations + Clone> TokenRevocations for RedisRevocations<F> {
    async fn revoke(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        // The durable record first: if it fails, the logout fails and the client can retry.
        self.fallback.revoke(token_id, expires_at).await?;
        let Err(error) = self.cache(token_id, expires_at).await else {
            return Ok(());
        };
        // Redis must learn of the revocation before checks can rely on it again.
        self.retry_in_background(token_id, expires_at);
        if refused_by_server(&error) {
            // Redis answers (out of memory, a read-only replica after a failover): checks still
            // read it and would accept the token, so this logout did not take effect. The
            // durable record makes the client's retry idempotent.
            warn!(%error, "Redis refused the revocation; the logout is reported unavailable");
            return Err(RepositoryError::unavailable("cache", error));
        }
        // Redis is unreachable: checks fall back to the durable record until it answers.
        warn!(%error, "revocation not cached in Redis yet; retrying in the background");
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepositoryError> {
        let cached = self.client.get::<Option<i64>, _>(self.key(token_id));
        match self.breaker.call("revocation checks", cached).await {
            Some(Ok(found)) => Ok(found.is_some()),
            None | Some(Err(_)) => self.fallback.is_revoked(token_id).await,
        }
    }

    async fn active(&self) -> Result<Vec<(String, DateTime<Utc>)>, RepositoryError> {
        self.fallback.active().await
    }
}

/// Whether Redis itself answered with an error (`OOM`, `READONLY`, `MISCONF`, ...), as opposed to
/// not answering at all (a lost connection, a timeout, a cancelled command).
fn refused_by_server(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Unknown | ErrorKind::InvalidArgument | ErrorKind::InvalidCommand
    )
}
