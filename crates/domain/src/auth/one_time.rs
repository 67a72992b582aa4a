//! Single-use account tokens (a password reset or email verification link's): random, sent only in an email, stored
//! only as their SHA-256. A plain hash is right here: the token holds 256 bits from the OS RNG,
//! so there is nothing to brute-force that a slow hash would protect.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::user::UserId;

/// How long a password reset token is valid.
pub const PASSWORD_RESET_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// How long an email verification token is valid.
pub const EMAIL_VERIFICATION_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A token as the email carries it: 64 lower-case hex digits of 32 random bytes. `Debug` does
/// not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeToken(String);

impl OneTimeToken {
    /// The token made of `random`, which must come from the OS RNG (the domain does no I/O, so
    /// the caller draws it).
    pub fn from_random(random: [u8; 32]) -> Self {
        Self(random.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token, to put in a link.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored of it.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeToken(<redacted>)")
    }
}

/// The SHA-256 of a token: what the store keeps and looks tokens up by. Equality is
/// constant-time, so comparing a presented token's hash with a stored one tells nothing of where
/// they differ.
#[derive(Clone, Copy)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token` as presented (any string: a malformed token just matches nothing).
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// A hash as stored; `None` unless it is 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        let difference = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

impl Eq for TokenHash {}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// What a single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenPurpose {
    /// Setting a new password.
    PasswordReset,
    /// Proving the user receives mail at their address.
    EmailVerification,
}

impl TokenPurpose {
    /// The purpose's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
        }
    }

    /// How long a token for this purpose is accepted after it is issued.
    pub fn lifetime(self) -> chrono::TimeDelta {
        match self {
            Self::PasswordReset => PASSWORD_RESET_LIFETIME,
            Self::EmailVerification => EMAIL_VERIFICATION_LIFETIME,
        }
    }
}

/// A single-use token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewAccountToken {
    /// The token's hash.
    pub hash: TokenHash,
    /// What it is for.
    pub purpose: TokenPurpose,
    /// The user it acts for.
    pub user_id: UserId,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl NewAccountToken {
    /// A fresh `purpose` token for `user_id`, made of `random` (from the OS RNG), valid for the
    /// purpose's lifetime from `now`: the token, for the email only, and what to store of it.
    pub fn issue(
        purpose: TokenPurpose,
        user_id: UserId,
        random: [u8; 32],
        now: DateTime<Utc>,
    ) -> (OneTimeToken, Self) {
        let token = OneTimeToken::from_random(random);
        let stored = Self::new(&token, purpose, user_id, now + purpose.lifetime());
        (token, stored)
    }

    /// `token`, for `purpose` on behalf of `user_id`, accepted until `expires_at`.
    pub fn new(
        token: &OneTimeToken,
        purpose: TokenPurpose,
        user_id: UserId,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            hash: token.hash(),
            purpose,
            user_id,
            expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hex_and_hash_as_sha256() {
        let token = OneTimeToken::from_random([0xab; 32]);
        assert_eq!(token.as_str(), "ab".repeat(32));
        assert!(token.hash() == TokenHash::of(&"ab".repeat(32)));
        assert!(token.hash() != TokenHash::of("ab"));
        assert_eq!(format!("{token:?}"), "OneTimeToken(<redacted>)");
        let empty = TokenHash::of("");
        assert_eq!(
            empty.as_bytes()[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "SHA-256 of the empty string"
        );
        assert!(TokenHash::from_bytes(&[0; 31]).is_none());
    }
}
