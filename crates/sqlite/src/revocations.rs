//! [`TokenRevocations`] in the `revoked_tokens` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Text};
use markets_domain::RepositoryError;
use markets_domain::auth::TokenRevocations;

use crate::error::from_query;
use crate::pool::SqlitePool;
use crate::values::Micros;

/// Revoked tokens in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteRevocations {
    pool: SqlitePool,
}

impl SqliteRevocations {
    /// Revocations over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[derive(QueryableByName)]
struct Active {
    #[diesel(sql_type = Text)]
    token_id: String,
    #[diesel(sql_type = BigInt)]
    expires_at: Micros,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[async_trait]
impl TokenRevocations for SqliteRevocations {
    async fn revoke(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        let token_id = token_id.to_owned();
        self.pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    // Expired revocations are dead weight: each logout clears them.
                    sql_query("DELETE FROM revoked_tokens WHERE expires_at < ?")
                        .bind::<BigInt, _>(Micros::now())
                        .execute(conn)?;
                    sql_query(
                        "INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?, ?) \
                         ON CONFLICT (token_id) DO NOTHING",
                    )
                    .bind::<Text, _>(token_id)
                    .bind::<BigInt, _>(Micros(expires_at))
                    .execute(conn)
                    .map(drop)
                })
            })
            .await?
            .map_err(from_query)
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepositoryError> {
        let token_id = token_id.to_owned();
        let found = self
            .pool
            .run(move |conn| {
                sql_query(
                    "SELECT count(*) AS count FROM revoked_tokens \
                     WHERE token_id = ? AND expires_at > ?",
                )
                .bind::<Text, _>(token_id)
                .bind::<BigInt, _>(Micros::now())
                .get_result::<Count>(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(found.count > 0)
    }

    async fn active(&self) -> Result<Vec<(String, DateTime<Utc>)>, RepositoryError> {
        let rows = self
            .pool
            .run(|conn| {
                sql_query("SELECT token_id, expires_at FROM revoked_tokens WHERE expires_at > ?")
                    .bind::<BigInt, _>(Micros::now())
                    .load::<Active>(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.token_id, row.expires_at.0))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;
    use chrono::Duration;

    #[tokio::test]
    async fn revocations_last_until_expiry() {
        let db = TestDatabase::new().await;
        let revocations = SqliteRevocations::new(db.pool());
        let later = Utc::now() + Duration::minutes(30);
        revocations.revoke("live", later).await.unwrap();
        revocations.revoke("live", later).await.unwrap();
        revocations
            .revoke("expired", Utc::now() - Duration::seconds(1))
            .await
            .unwrap();
        assert!(revocations.is_revoked("live").await.unwrap());
        assert!(!revocations.is_revoked("expired").await.unwrap());
        assert!(!revocations.is_revoked("unknown").await.unwrap());
        let active = revocations.active().await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].0, "live");
        assert_eq!(active[0].1.timestamp_micros(), later.timestamp_micros());
    }
}
