//! [`TokenRevocations`] in the `revoked_tokens` table: the durable record behind the Redis check.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_query;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use markets_domain::RepositoryError;
use markets_domain::auth::TokenRevocations;

use crate::error::from_query;
use crate::pool::PgPool;

/// Revoked tokens in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgRevocations {
    pool: PgPool,
}

impl PgRevocations {
    /// Revocations over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(diesel::QueryableByName)]
struct Active {
    #[diesel(sql_type = Text)]
    token_id: String,
    #[diesel(sql_type = Timestamptz)]
    expires_at: DateTime<Utc>,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[async_trait]
impl TokenRevocations for PgRevocations {
    async fn revoke(
        &self,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        // Expired revocations are dead weight: each logout clears them.
        sql_query(
            "WITH purged AS (DELETE FROM revoked_tokens WHERE expires_at < now()) \
             INSERT INTO revoked_tokens (token_id, expires_at) VALUES ($1, $2) \
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind::<Text, _>(token_id)
        .bind::<Timestamptz, _>(expires_at)
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(from_query)
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let found = sql_query(
            "SELECT count(*) AS count FROM revoked_tokens WHERE token_id = $1 AND expires_at > now()",
        )
        .bind::<Text, _>(token_id)
        .get_result::<Count>(&mut conn)
        .await
        .map_err(from_query)?;
        Ok(found.count > 0)
    }

    async fn active(&self) -> Result<Vec<(String, DateTime<Utc>)>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let rows =
            sql_query("SELECT token_id, expires_at FROM revoked_tokens WHERE expires_at > now()")
                .load::<Active>(&mut conn)
                .await
                .map_err(from_query)?;
        Ok(rows
            .into_iter()
            .map(|row| (row.token_id, row.expires_at))
            .collect())
    }
}
