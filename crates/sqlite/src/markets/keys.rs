//! Idempotency keys of market creates, in the create's transaction. The store runs one write
//! at a time (the write gate, then SQLite's write lock), so the check and the create see no
//! other writer: a repeat runs after the first has committed, and is replayed.

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use markets_domain::RepositoryError;
use markets_domain::market::{IdempotencyKey, Market, NewMarket};

use crate::schema::idempotency_keys;
use crate::values::{Micros, SqlId};

/// Why a keyed create stopped inside its transaction (rolling it back).
#[derive(Debug)]
pub(super) enum KeyedFailure {
    /// A query failed.
    Query(DieselError),
    /// A row or the stored market could not be read back.
    Row(RepositoryError),
    /// The key was used with another fingerprint.
    Reused,
}

impl From<DieselError> for KeyedFailure {
    fn from(error: DieselError) -> Self {
        Self::Query(error)
    }
}

/// The market an earlier create with this key returned, if its record is still current at
/// `now` and has the same fingerprint; [`KeyedFailure::Reused`] if it has another.
pub(super) fn replay(
    conn: &mut SqliteConnection,
    new: &NewMarket,
    key: &IdempotencyKey,
    now: Micros,
) -> Result<Option<Market>, KeyedFailure> {
    let stored = idempotency_keys::table
        .find((SqlId(new.creator_id.as_uuid()), key.as_str()))
        .filter(idempotency_keys::expires_at.gt(now.get()))
        .select((idempotency_keys::fingerprint, idempotency_keys::response))
        .first::<(String, String)>(conn)
        .optional()?;
    match stored {
        None => Ok(None),
        Some((fingerprint, _)) if fingerprint != key.fingerprint() => Err(KeyedFailure::Reused),
        Some((_, response)) => serde_json::from_str(&response)
            .map(Some)
            .map_err(|error| KeyedFailure::Row(RepositoryError::unexpected(error))),
    }
}

/// Records `key` as having created `market` at `now` (replacing an expired record of it).
pub(super) fn record(
    conn: &mut SqliteConnection,
    new: &NewMarket,
    key: &IdempotencyKey,
    market: &Market,
    now: Micros,
) -> Result<(), KeyedFailure> {
    let response = serde_json::to_string(market)
        .map_err(|error| KeyedFailure::Row(RepositoryError::unexpected(error)))?;
    let user = SqlId(new.creator_id.as_uuid());
    diesel::delete(idempotency_keys::table.find((user, key.as_str()))).execute(conn)?;
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user),
            idempotency_keys::idempotency_key.eq(key.as_str()),
            idempotency_keys::fingerprint.eq(key.fingerprint()),
            idempotency_keys::market_id.eq(SqlId(market.id.as_uuid())),
            idempotency_keys::response.eq(&response),
            idempotency_keys::created_at.eq(now.get()),
            idempotency_keys::expires_at.eq(now.plus(IdempotencyKey::LIFETIME)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes the records expired at `now`; how many.
pub(super) fn purge(conn: &mut SqliteConnection, now: Micros) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::expires_at.le(now.get())))
        .execute(conn)
}
