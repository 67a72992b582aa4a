//! [`AuditLog`] on SQLite: the `audit_events` table. Role changes and deletions write their event
//! through [`record`] inside their own transaction. Tallies are one upsert on the unique
//! `tally_key`, which adds to the row's count inside the single writer's statement, so no count
//! is lost to another connection or process.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use markets_domain::RepositoryError;
use markets_domain::audit::{AuditEvent, AuditEventId, AuditLog, AuditPage};
use markets_domain::market::PageSize;
use markets_domain::user::UserId;
use uuid::Uuid;

use crate::error::{corrupt, from_query};
use crate::pool::SqlitePool;
use crate::values::{Micros, SqlId};

/// Audit events in the `audit_events` table.
#[derive(Debug, Clone)]
pub struct SqliteAuditLog {
    pool: SqlitePool,
}

impl SqliteAuditLog {
    /// A log over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// Inserts `event` on `conn`, inside the caller's transaction if there is one.
pub(crate) fn record(conn: &mut SqliteConnection, event: &AuditEvent) -> QueryResult<()> {
    insert(conn, event, None)
}

/// Inserts `event`, under `tally_key` if it is tallied: when a row of that key exists, its
/// `details.count` grows by the event's instead. One statement for both kinds, since appended
/// events (no key) never conflict.
fn insert(
    conn: &mut SqliteConnection,
    event: &AuditEvent,
    tally_key: Option<&str>,
) -> QueryResult<()> {
    let details = serde_json::to_string(&event.details)
        .map_err(|error| diesel::result::Error::SerializationError(Box::new(error)))?;
    sql_query(
        "INSERT INTO audit_events \
         (id, at, action, actor_id, target_type, target_id, request_id, ip, details, tally_key) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (tally_key) DO UPDATE SET details = json_set(details, '$.count', \
         CAST(CAST(json_extract(details, '$.count') AS INTEGER) \
         + CAST(json_extract(excluded.details, '$.count') AS INTEGER) AS TEXT))",
    )
    .bind::<Binary, _>(SqlId(event.id.as_uuid()))
    .bind::<BigInt, _>(Micros(event.at))
    .bind::<Text, _>(event.action.as_str())
    .bind::<Nullable<Binary>, _>(event.actor_id.map(|id| SqlId(id.as_uuid())))
    .bind::<Nullable<Text>, _>(event.target_type.as_deref())
    .bind::<Nullable<Text>, _>(event.target_id.as_deref())
    .bind::<Nullable<Text>, _>(event.request_id.as_deref())
    .bind::<Nullable<Text>, _>(event.ip.as_deref())
    .bind::<Text, _>(details)
    .bind::<Nullable<Text>, _>(tally_key)
    .execute(conn)
    .map(drop)
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = Binary)]
    id: SqlId,
    #[diesel(sql_type = BigInt)]
    at: Micros,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Binary>)]
    actor_id: Option<SqlId>,
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
            id: AuditEventId::from(row.id.0),
            at: row.at.0,
            action: row.action.parse().map_err(corrupt("audit_events"))?,
            actor_id: row.actor_id.map(|id| UserId::from(id.0)),
            target_type: row.target_type,
            target_id: row.target_id,
            request_id: row.request_id,
            ip: row.ip,
            details: serde_json::from_str(&row.details).map_err(RepositoryError::unexpected)?,
        })
    }
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        let event = event.clone();
        self.pool
            .write(move |conn| record(conn, &event))
            .await?
            .map_err(from_query)
    }

    async fn tally(&self, event: &AuditEvent, count: u64) -> Result<(), RepositoryError> {
        let (key, event) = (event.tally_key(), event.counted(count));
        self.pool
            .write(move |conn| insert(conn, &event, Some(&key)))
            .await?
            .map_err(from_query)
    }

    /// One primary-key range scan, backwards: `Uuid::max()` stands for "from the newest".
    async fn page(
        &self,
        before: Option<AuditEventId>,
        limit: PageSize,
    ) -> Result<AuditPage, RepositoryError> {
        let before = SqlId(before.map_or(Uuid::max(), |id| id.as_uuid()));
        let fetch = i64::from(AuditPage::lookahead(limit));
        let events = self
            .pool
            .run(move |conn| {
                sql_query(
                    "SELECT id, at, action, actor_id, target_type, target_id, request_id, ip, \
                     details FROM audit_events WHERE id < ? ORDER BY id DESC LIMIT ?",
                )
                .bind::<Binary, _>(before)
                .bind::<BigInt, _>(fetch)
                .load::<EventRow>(conn)
            })
            .await?
            .map_err(from_query)?
            .into_iter()
            .map(AuditEvent::try_from)
            .collect::<Result<_, _>>()?;
        Ok(AuditPage::from_lookahead(events, limit))
    }

    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, RepositoryError> {
        let purged = self
            .pool
            .write(move |conn| {
                sql_query("DELETE FROM audit_events WHERE at < ?")
                    .bind::<BigInt, _>(Micros(cutoff))
                    .execute(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(purged as u64)
    }
}
