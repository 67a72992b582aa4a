//! What the Redis test files share: the durable revocation record they put behind Redis.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use markets_domain::RepositoryError;
use markets_domain::auth::TokenRevocations;
use markets_domain::testing::InMemoryRevocations;

/// The durable record behind Redis: it keeps revocations (for `active` and for refilling Redis)
/// but never answers a check, so a check can only pass on Redis's answers.
#[derive(Debug, Clone, Default)]
pub struct RecordOnly(pub InMemoryRevocations);

#[async_trait]
impl TokenRevocations for RecordOnly {
    async fn revoke(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        self.0.revoke(token_id, expires_at).await
    }

    async fn is_revoked(&self, _: &str) -> Result<bool, RepositoryError> {
        Err(RepositoryError::unexpected(
            "Redis did not answer: no fallback for checks here",
        ))
    }

    async fn active(&self) -> Result<Vec<(String, DateTime<Utc>)>, RepositoryError> {
        self.0.active().await
    }
}
