//! Passwords and the port that hashes them.

use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

use crate::error::{BoxError, ValidationError};

/// A password chosen at registration: 8 to 128 characters. Its `Debug` output is redacted so it
/// cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The shortest password accepted, in characters.
    pub const MIN_CHARS: usize = 8;
    /// The longest password accepted, in characters (bounds the hashing work one request causes).
    pub const MAX_CHARS: usize = 128;

    /// Checks the length of `raw`. Passwords are not trimmed: spaces are characters too.
    ///
    /// # Errors
    /// If `raw` is shorter than 8 or longer than 128 characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "password",
                format!(
                    "must be {} to {} characters long",
                    Self::MIN_CHARS,
                    Self::MAX_CHARS
                ),
            ))
        }
    }

    /// The password itself, for the hasher.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$...`), opaque to the domain.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a stored PHC string.
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string, for storing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Hashing failed for a reason other than a wrong password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Every hashing slot stayed taken for as long as a caller may wait, or too many callers
    /// were waiting already. Nothing is wrong but load: the same call may succeed after
    /// `retry_after`.
    #[error("password hashing is saturated")]
    Busy {
        /// A hint for when a retry may find a free slot.
        retry_after: Duration,
    },
    /// Anything else (e.g. a corrupt stored hash): retrying will not help.
    #[error("password hashing failed")]
    Failed(#[source] BoxError),
}

impl HashError {
    /// A [`HashError::Failed`] caused by `source`.
    pub fn failed(source: impl Into<BoxError>) -> Self {
        Self::Failed(source.into())
    }
}

/// Hashes and verifies passwords. Implementations must keep slow hashing off the async executor,
/// and may refuse work with [`HashError::Busy`] rather than queue it without bound.
#[async_trait]
pub trait PasswordHasher: Send + Sync + fmt::Debug + 'static {
    /// Hashes `password` with a fresh salt.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;

    /// Whether `candidate` matches `hash`. A wrong password is `Ok(false)`, not an error.
    async fn verify(&self, candidate: &str, hash: &PasswordHash) -> Result<bool, HashError>;

    /// A valid hash of no real password, verified against when a login names an unknown email
    /// so that unknown emails and wrong passwords take the same time.
    fn dummy_hash(&self) -> &PasswordHash;
}

forward_through_arc!(PasswordHasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError>;
    async fn verify(&self, candidate: &str, hash: &PasswordHash) -> Result<bool, HashError>;
    fn dummy_hash(&self) -> &PasswordHash;
});
