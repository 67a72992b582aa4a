//! The port that remembers revoked tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::RepositoryError;

/// Remembers revoked tokens (by `jti`) until they would have expired, for every instance.
#[async_trait]
pub trait TokenRevocations: Send + Sync + std::fmt::Debug + 'static {
    /// Revokes `token_id` until `expires_at` (after which the token is refused anyway).
    async fn revoke(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepositoryError>;

    /// Whether `token_id` was revoked.
    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepositoryError>;

    /// Every revocation that has not expired yet, with its expiry (to refill a cache that lost
    /// them).
    async fn active(&self) -> Result<Vec<(String, DateTime<Utc>)>, RepositoryError>;
}

forward_through_arc!(TokenRevocations {
    async fn revoke(&self, token_id: &str, expires_at: DateTime<Utc>) -> Result<(), RepositoryError>;
    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepositoryError>;
    async fn active(&self) -> Result<Vec<(String, DateTime<Utc>)>, RepositoryError>;
});
