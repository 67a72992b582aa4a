//! How driver and pool errors become domain errors: nothing from diesel crosses a port.
//!
//! SQLite's driver reports most failures as `DatabaseErrorKind::Unknown` with SQLite's message,
//! so lock contention that outlasted `busy_timeout` is recognised by that message.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;
use markets_domain::{RepositoryError, ValidationError};

/// The dependency name used in "<service> is currently unavailable".
pub(crate) const SERVICE: &str = "database";

/// No connection within the wait timeout, or none could be opened: the database is unavailable.
pub(crate) fn from_pool(error: PoolError) -> RepositoryError {
    match error {
        PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed => {
            RepositoryError::unavailable(SERVICE, error)
        }
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            RepositoryError::unexpected(error)
        }
    }
}

/// A failed query: a database still locked by another writer after `busy_timeout`
/// (`SQLITE_BUSY`, `SQLITE_LOCKED`) is an outage, like a lost connection; anything else is
/// unexpected.
pub(crate) fn from_query(error: DieselError) -> RepositoryError {
    if is_busy(&error)
        || matches!(
            error,
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
                | DieselError::BrokenTransactionManager
        )
    {
        RepositoryError::unavailable(SERVICE, error)
    } else {
        RepositoryError::unexpected(error)
    }
}

/// SQLite's messages for `SQLITE_BUSY` ("database is locked") and `SQLITE_LOCKED` ("database
/// table is locked", "database schema is locked").
fn is_busy(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
            if info.message().contains("is locked")
    )
}

/// Whether `error` violates the uniqueness of `column` (`table.column`, as SQLite names it in
/// "UNIQUE constraint failed: users.email"; SQLite reports no constraint name).
pub(crate) fn is_unique_violation(error: &DieselError, column: &str) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.message().contains(column)
    )
}

/// A stored value that the domain refuses: the schema's checks and the domain's disagree.
#[derive(Debug, thiserror::Error)]
#[error("a stored {table} row holds an invalid value")]
pub(crate) struct CorruptRow {
    table: &'static str,
    #[source]
    source: ValidationError,
}

/// Maps a domain validation failure on a stored value to an unexpected repository error.
pub(crate) fn corrupt(table: &'static str) -> impl Fn(ValidationError) -> RepositoryError {
    move |source| RepositoryError::unexpected(CorruptRow { table, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(message: &str) -> DieselError {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()))
    }

    #[test]
    fn lock_contention_is_an_outage_and_other_failures_are_not() {
        for message in [
            "database is locked",
            "database table is locked",
            "database schema is locked",
        ] {
            assert!(
                matches!(
                    from_query(unknown(message)),
                    RepositoryError::Unavailable {
                        service: "database",
                        ..
                    }
                ),
                "{message}"
            );
        }
        assert!(matches!(
            from_query(unknown("no such table: markets")),
            RepositoryError::Unexpected(_)
        ));
    }
}
