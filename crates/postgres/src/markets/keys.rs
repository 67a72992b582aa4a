//! Idempotency keys of market creates, in the create's transaction.
//!
//! A create under a key first takes a transaction-scoped advisory lock named after the creator
//! and key, without waiting: if another transaction holds it, that request is still in flight
//! (here or on another instance) and this one is refused at once. Holding it, the create reads
//! the key's unexpired record: the same fingerprint replays the stored market, another is
//! refused; without one, the market, its jobs and the record are written together, and the
//! lock goes with the commit.

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use markets_domain::RepositoryError;
use markets_domain::market::{IdempotencyKey, Market, NewMarket};
use markets_domain::user::UserId;

use crate::schema::idempotency_keys;

/// Why a keyed create stopped inside its transaction (rolling it back).
#[derive(Debug)]
pub(super) enum KeyedFailure {
    /// A query failed.
    Query(DieselError),
    /// A row or the stored market could not be read back.
    Row(RepositoryError),
    /// The key was used with another fingerprint.
    Reused,
    /// Another transaction holds the key.
    InFlight,
}

impl From<DieselError> for KeyedFailure {
    fn from(error: DieselError) -> Self {
        Self::Query(error)
    }
}

diesel::define_sql_function! {
    /// `pg_try_advisory_xact_lock(key)`: the lock, if free, until the transaction ends.
    fn pg_try_advisory_xact_lock(key: BigInt) -> Bool;
}

/// The advisory lock of `creator`'s `key`: 64 bits of an FNV-1a hash of both (a collision of
/// two keys only makes one of them wait for the other's transaction to end).
fn lock_id(creator: UserId, key: &IdempotencyKey) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = creator.as_uuid().into_bytes();
    for byte in bytes.iter().chain(key.as_str().as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Takes the key's lock, or reports it in flight.
pub(super) async fn lock(
    conn: &mut AsyncPgConnection,
    creator: UserId,
    key: &IdempotencyKey,
) -> Result<(), KeyedFailure> {
    let locked: bool = diesel::select(pg_try_advisory_xact_lock(lock_id(creator, key)))
        .get_result(conn)
        .await?;
    if locked {
        Ok(())
    } else {
        Err(KeyedFailure::InFlight)
    }
}

/// The market an earlier create with this key returned, if its record is still current and
/// has the same fingerprint; [`KeyedFailure::Reused`] if it has another.
pub(super) async fn replay(
    conn: &mut AsyncPgConnection,
    creator: UserId,
    key: &IdempotencyKey,
) -> Result<Option<Market>, KeyedFailure> {
    let stored = idempotency_keys::table
        .find((creator.as_uuid(), key.as_str()))
        .filter(idempotency_keys::expires_at.gt(diesel::dsl::now))
        .select((idempotency_keys::fingerprint, idempotency_keys::response))
        .first::<(String, String)>(conn)
        .await
        .optional()?;
    match stored {
        None => Ok(None),
        Some((fingerprint, _)) if fingerprint != key.fingerprint() => Err(KeyedFailure::Reused),
        Some((_, response)) => serde_json::from_str(&response)
            .map(Some)
            .map_err(|error| KeyedFailure::Row(RepositoryError::unexpected(error))),
    }
}

/// Records `key` as having created `market` (replacing an expired record of it).
pub(super) async fn record(
    conn: &mut AsyncPgConnection,
    new: &NewMarket,
    key: &IdempotencyKey,
    market: &Market,
) -> Result<(), KeyedFailure> {
    let response = serde_json::to_string(market)
        .map_err(|error| KeyedFailure::Row(RepositoryError::unexpected(error)))?;
    // The database's clock, as `replay` and `purge` compare with.
    let expires = diesel::dsl::sql::<Timestamptz>(&format!(
        "now() + make_interval(secs => {})",
        IdempotencyKey::LIFETIME.as_secs()
    ));
    let row = (
        idempotency_keys::user_id.eq(new.creator_id.as_uuid()),
        idempotency_keys::idempotency_key.eq(key.as_str()),
        idempotency_keys::fingerprint.eq(key.fingerprint()),
        idempotency_keys::market_id.eq(market.id.as_uuid()),
        idempotency_keys::response.eq(&response),
        idempotency_keys::created_at.eq(diesel::dsl::now),
        idempotency_keys::expires_at.eq(expires),
    );
    // Under the key's lock, a record still there is an expired one.
    diesel::delete(idempotency_keys::table.find((new.creator_id.as_uuid(), key.as_str())))
        .execute(conn)
        .await?;
    diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the expired records; how many.
pub(super) async fn purge(conn: &mut AsyncPgConnection) -> Result<usize, DieselError> {
    diesel::delete(
        idempotency_keys::table.filter(idempotency_keys::expires_at.le(diesel::dsl::now)),
    )
    .execute(conn)
    .await
}
