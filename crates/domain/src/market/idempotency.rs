//! Idempotent creation: a caller's key makes a retried create answer what the first one did
//! instead of creating a second market.

use std::time::Duration;

use super::model::Market;
use crate::error::ValidationError;

/// A caller's idempotency key for one create, with the fingerprint of the request it came with
/// (an opaque digest the front end computes from what the request asks for). Keys are the
/// caller's own: the store keeps them per creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: String,
}

impl IdempotencyKey {
    /// How long a key is remembered: a repeat after this creates anew.
    pub const LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
    /// The longest key, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Checks `key`: 1 to 255 printable ASCII characters (space to `~`).
    ///
    /// # Errors
    /// Otherwise, on field `Idempotency-Key`.
    pub fn parse(key: &str, fingerprint: impl Into<String>) -> Result<Self, ValidationError> {
        let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
        if key.is_empty() || key.len() > Self::MAX_LEN || !printable {
            return Err(ValidationError::new(
                "Idempotency-Key",
                "must be 1 to 255 printable ASCII characters",
            ));
        }
        Ok(Self {
            key: key.to_owned(),
            fingerprint: fingerprint.into(),
        })
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The fingerprint of the request it came with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// What a create under an idempotency key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// The first request with this key: the market was created, as it is returned.
    Created(Market),
    /// A repeat of an earlier request: nothing was created; the market as the first request
    /// returned it.
    Replayed(Market),
}

impl Creation {
    /// The market, created now or before.
    pub fn market(&self) -> &Market {
        match self {
            Self::Created(market) | Self::Replayed(market) => market,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255_bytes() {
        assert!(IdempotencyKey::parse("order-42 retry #1~", "f").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255), "f").is_ok());
        for bad in ["", "tab\there", "é", "\u{7f}"] {
            assert!(IdempotencyKey::parse(bad, "f").is_err(), "{bad:?}");
        }
        let long = IdempotencyKey::parse(&"k".repeat(256), "f").unwrap_err();
        assert_eq!(long.field, "Idempotency-Key");
    }
}
