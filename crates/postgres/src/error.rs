//! How driver and pool errors become domain errors: nothing from diesel crosses a port.

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

/// A failed query: a lost connection is an outage, anything else is unexpected.
pub(crate) fn from_query(error: DieselError) -> RepositoryError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | DieselError::BrokenTransactionManager => RepositoryError::unavailable(SERVICE, error),
        other => RepositoryError::unexpected(other),
    }
}

/// Whether `error` is a violation of the named unique constraint or index.
pub(crate) fn is_unique_violation(error: &DieselError, constraint: &str) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(constraint)
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
