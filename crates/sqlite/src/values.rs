//! How domain values are stored: ids as 16-byte BLOBs (memcmp order is the UUID order the
//! domain sorts ties by), timestamps as INTEGER microseconds since the Unix epoch (exact,
//! sortable, PostgreSQL's precision). Volumes are INTEGER cents, read with
//! `Volume::from_cents`.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Binary};
use diesel::sqlite::{Sqlite, SqliteValue};
use uuid::Uuid;

/// A UUID in a BLOB column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Binary)]
pub(crate) struct SqlId(pub(crate) Uuid);

impl ToSql<Binary, Sqlite> for SqlId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.as_bytes().as_slice());
        Ok(IsNull::No)
    }
}

impl FromSql<Binary, Sqlite> for SqlId {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let bytes = <Vec<u8> as FromSql<Binary, Sqlite>>::from_sql(value)?;
        Ok(Self(Uuid::from_slice(&bytes)?))
    }
}

/// A UTC instant in an INTEGER column, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = BigInt)]
pub(crate) struct Micros(pub(crate) DateTime<Utc>);

impl Micros {
    /// The current time, as stored (to the microsecond).
    pub(crate) fn now() -> Self {
        Self(Utc::now())
    }

    /// The stored integer.
    pub(crate) fn get(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// `self` plus `duration`, saturating (a lease of `Duration::MAX` is "forever").
    pub(crate) fn plus(self, duration: std::time::Duration) -> i64 {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        self.get().saturating_add(micros)
    }
}

impl ToSql<BigInt, Sqlite> for Micros {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.get());
        Ok(IsNull::No)
    }
}

impl FromSql<BigInt, Sqlite> for Micros {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let micros = <i64 as FromSql<BigInt, Sqlite>>::from_sql(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Self)
            .ok_or_else(|| format!("timestamp {micros} is out of range").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_byte_order_is_uuid_order() {
        let (a, b) = (Uuid::now_v7(), Uuid::new_v4());
        assert_eq!(a.as_bytes().cmp(b.as_bytes()), a.cmp(&b));
    }

    #[test]
    fn leases_saturate() {
        let now = Micros::now();
        assert_eq!(now.plus(std::time::Duration::MAX), i64::MAX);
        assert_eq!(
            now.plus(std::time::Duration::from_millis(1)),
            now.get() + 1000
        );
    }
}
