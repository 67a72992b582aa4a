//! Errors shared by every port and service.

use std::error::Error as StdError;

/// A boxed error from an adapter, kept as the cause of a domain error so it can be logged.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `error` and its chain of causes in one line (`outer: inner: root`), for logs.
pub fn report(error: &(dyn StdError + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        line.push_str(": ");
        line.push_str(&inner.to_string());
        cause = inner.source();
    }
    line
}

/// A storage port could not do its work for reasons that have nothing to do with the request.
///
/// Adapters map their driver errors into one of these two variants; no driver type crosses a port.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The store could not be reached in time (no connection within the pool's wait timeout,
    /// connection refused, server shutting down). Callers answer "service unavailable".
    #[error("{service} is currently unavailable")]
    Unavailable {
        /// The name of the unavailable dependency, e.g. `"database"`.
        service: &'static str,
        /// What the adapter saw.
        #[source]
        source: BoxError,
    },
    /// Anything else the store reported. Callers answer "internal error" and log the cause.
    #[error("unexpected storage error")]
    Unexpected(#[source] BoxError),
}

impl RepositoryError {
    /// Wraps an adapter error as [`RepositoryError::Unexpected`].
    pub fn unexpected(source: impl Into<BoxError>) -> Self {
        Self::Unexpected(source.into())
    }

    /// Wraps an adapter error as [`RepositoryError::Unavailable`] for `service`.
    pub fn unavailable(service: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            service,
            source: source.into(),
        }
    }
}

/// A value failed validation: which field, and why, in words fit for the API's `details`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The input field, named as in the HTTP contract (`"name"`, `"email"`, ...).
    pub field: &'static str,
    /// A human-readable reason.
    pub message: String,
}

impl ValidationError {
    /// Builds a validation error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
