//! [`AuditLog`] on PostgreSQL: the `audit_events` table. Role changes and deletions write their
//! event through [`record`] inside their own transaction. Tallies are one upsert on the unique
//! `tally_key`, which adds to the row's count under the row's lock, so concurrent tallies from
//! any number of connections or instances lose nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use markets_domain::RepositoryError;
use markets_domain::audit::{AuditEvent, AuditEventId, AuditLog, AuditPage};
use markets_domain::market::PageSize;
use markets_domain::user::UserId;
use uuid::Uuid;

use crate::error::{corrupt, from_query};
use crate::pool::PgPool;

/// Audit events in the `audit_events` table.
#[derive(Debug, Clone)]
pub struct PgAuditLog {
    pool: PgPool,
}

impl PgAuditLog {
    /// A log over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Inserts `event` on `conn`, inside the caller's transaction if there is one.
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    event: &AuditEvent,
) -> Result<(), diesel::result::Error> {
    insert(conn, event, None).await
}

/// Inserts `event`, under `tally_key` if it is tallied: when a row of that key exists, its
/// `details.count` grows by the event's instead. One statement for both kinds, since appended
/// events (no key) never conflict.
async fn insert(
    conn: &mut AsyncPgConnection,
    event: &AuditEvent,
    tally_key: Option<&str>,
) -> Result<(), diesel::result::Error> {
    let details = serde_json::to_string(&event.details)
        .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
    sql_query(
        "INSERT INTO audit_events \
         (id, at, action, actor_id, target_type, target_id, request_id, ip, details, tally_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) \
         ON CONFLICT (tally_key) DO UPDATE SET details = jsonb_set(audit_events.details, \
         '{count}', to_jsonb(((audit_events.details->>'count')::bigint \
         + (EXCLUDED.details->>'count')::bigint)::text))",
    )
    .bind::<SqlUuid, _>(event.id.as_uuid())
    .bind::<Timestamptz, _>(event.at)
    .bind::<Text, _>(event.action.as_str())
    .bind::<Nullable<SqlUuid>, _>(event.actor_id.map(|id| id.as_uuid()))
    .bind::<Nullable<Text>, _>(event.target_type.as_deref())
    .bind::<Nullable<Text>, _>(event.target_id.as_deref())
    .bind::<Nullable<Text>, _>(event.request_id.as_deref())
    .bind::<Nullable<Text>, _>(event.ip.as_deref())
    .bind::<Text, _>(details)
    .bind::<Nullable<Text>, _>(tally_key)
    .execute(conn)
    .await
    .map(drop)
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    actor_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    target_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    target_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Text)]
    details: String,
}

impl TryFrom<EventRow> for AuditEvent {
    type Error = RepositoryError;

    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        Ok(AuditEvent {
            id: AuditEventId::from(row.id),
            at: row.at,
            action: row.action.parse().map_err(corrupt("audit_events"))?,
            actor_id: row.actor_id.map(UserId::from),
            target_type: row.target_type,
            target_id: row.target_id,
            request_id: row.request_id,
            ip: row.ip,
            details: serde_json::from_str(&row.details).map_err(RepositoryError::unexpected)?,
        })
    }
}

#[async_trait]
impl AuditLog for PgAuditLog {
    async fn append(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        record(&mut conn, event).await.map_err(from_query)
    }

    async fn tally(&self, event: &AuditEvent, count: u64) -> Result<(), RepositoryError> {
        let mut conn = self.pool.get().await?;
        let key = event.tally_key();
        insert(&mut conn, &event.counted(count), Some(&key))
            .await
            .map_err(from_query)
    }

    /// One primary-key range scan, backwards: `Uuid::max()` stands for "from the newest", so the
    /// first page and every later one share a plan.
    async fn page(
        &self,
        before: Option<AuditEventId>,
        limit: PageSize,
    ) -> Result<AuditPage, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let before = before.map_or(Uuid::max(), |id| id.as_uuid());
        let events = sql_query(
            "SELECT id, at, action, actor_id, target_type, target_id, request_id, ip, \
             details::text AS details \
             FROM audit_events WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind::<SqlUuid, _>(before)
        .bind::<BigInt, _>(i64::from(AuditPage::lookahead(limit)))
        .load::<EventRow>(&mut conn)
        .await
        .map_err(from_query)?
        .into_iter()
        .map(AuditEvent::try_from)
        .collect::<Result<_, _>>()?;
        Ok(AuditPage::from_lookahead(events, limit))
    }

    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let purged = sql_query("DELETE FROM audit_events WHERE at < $1")
            .bind::<Timestamptz, _>(cutoff)
            .execute(&mut conn)
            .await
            .map_err(from_query)?;
        Ok(purged as u64)
    }
}
