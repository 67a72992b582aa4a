//! Access tokens and the port that issues and verifies them.

use chrono::{DateTime, Utc};
use std::fmt;

use crate::error::BoxError;
use crate::permission::Role;
use crate::user::{User, UserId};

/// A signed access token and how long it lives. `Debug` does not show the token.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessToken {
    /// The bearer token to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl AccessToken {
    /// `token`, valid for `expires_in` seconds.
    pub fn new(token: String, expires_in: u64) -> Self {
        Self { token, expires_in }
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What a verified token says. The role is the one at issue time: callers must not trust it
/// for authorisation, and read the user's current role instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenClaims {
    /// The user the token was issued to (`sub`).
    pub user_id: UserId,
    /// The user's role when the token was issued (`role`).
    pub role: Role,
    /// The token's unique id (`jti`), for revocation.
    pub token_id: String,
    /// The user's token epoch when the token was issued (`gen`): the token is refused once the
    /// user's epoch has moved past it.
    pub epoch: u64,
    /// When it was issued (`iat`).
    pub issued_at: DateTime<Utc>,
    /// When it expires (`exp`).
    pub expires_at: DateTime<Utc>,
}

impl TokenClaims {
    /// The claims of token `token_id`, issued to `user_id` with `role` at token epoch `epoch`,
    /// valid from `issued_at` until `expires_at`.
    pub fn new(
        user_id: UserId,
        role: Role,
        token_id: String,
        epoch: u64,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            user_id,
            role,
            token_id,
            epoch,
            issued_at,
            expires_at,
        }
    }
}

/// Why a token was refused. Each reason is worth telling apart in the logs; clients all get 401.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Past its expiry.
    #[error("token has expired")]
    Expired,
    /// Signed with another key, or altered.
    #[error("token signature is invalid")]
    BadSignature,
    /// Signed with an algorithm other than the one accepted (including `none`).
    #[error("token algorithm is not accepted")]
    WrongAlgorithm,
    /// Revoked by logout.
    #[error("token has been revoked")]
    Revoked,
    /// Issued before its user's token epoch moved on (a password reset).
    #[error("token was issued before the user's tokens were revoked")]
    Superseded,
    /// Not a well-formed token, or missing a required claim.
    #[error("token is malformed")]
    Malformed,
    /// The token is authentic, but the user it was issued to no longer exists.
    #[error("token's user no longer exists")]
    UnknownUser,
    /// Issuing failed (e.g. the signing key is unusable).
    #[error("token could not be signed")]
    Signing(#[source] BoxError),
}

/// Issues and verifies access tokens (e.g. JWT HS256).
pub trait TokenIssuer: Send + Sync + fmt::Debug + 'static {
    /// A fresh token for `user`, with a new unique id, carrying `user.token_epoch`.
    ///
    /// # Errors
    /// [`TokenError::Signing`] if signing fails.
    fn issue(&self, user: &User) -> Result<AccessToken, TokenError>;

    /// The claims of `token`, if it is authentic, unexpired and well-formed.
    ///
    /// # Errors
    /// The reason the token is refused.
    fn verify(&self, token: &str) -> Result<TokenClaims, TokenError>;
}

forward_through_arc!(TokenIssuer {
    fn issue(&self, user: &User) -> Result<AccessToken, TokenError>;
    fn verify(&self, token: &str) -> Result<TokenClaims, TokenError>;
});
