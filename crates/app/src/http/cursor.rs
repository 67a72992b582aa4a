//! Opaque, tamper-evident cursors for keyset paging, one codec for every cursor-paged listing.
//! A cursor is the base64 of `|`-joined fields led by a tag naming its listing, followed by a
//! MAC of those fields: clients cannot read positions, a cursor the service did not mint is
//! refused (422 on `cursor`), and a cursor of one listing is refused by another. Market cursors
//! also remember the sort and status they were minted for, so they cannot be replayed against
//! another market list.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use hmac::{Hmac, KeyInit, Mac};
use markets_domain::ValidationError;
use markets_domain::audit::AuditEventId;
use markets_domain::market::{KeysetPosition, MarketFilter, MarketSort, SortKey, Volume};
use sha2::{Digest, Sha256};

/// The tag of market list cursors.
const VERSION: &str = "v1";
/// The tag of audit trail cursors.
const AUDIT: &str = "a1";
/// Bytes of HMAC-SHA256 kept in a cursor: 128 bits, beyond guessing, half the length.
const TAG_BYTES: usize = 16;
/// Separates the cursor key from every other use of the secret it is derived from.
const KEY_LABEL: &[u8] = b"markets cursor mac v1";

type HmacSha256 = Hmac<Sha256>;

fn invalid() -> ValidationError {
    ValidationError::new("cursor", "is not a valid cursor")
}

/// Mints and opens cursors under one key. Every instance that derives it from the same secret
/// accepts the others' cursors.
#[derive(Clone)]
pub struct Cursors {
    mac: HmacSha256,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursors").finish_non_exhaustive()
    }
}

impl Cursors {
    /// Cursors keyed from `secret` (the token signing secret): the key is the SHA-256 of a label
    /// of its own and the secret, so a cursor's MAC never doubles as a token signature.
    pub fn new(secret: &[u8]) -> Self {
        let derived = Sha256::new()
            .chain_update(KEY_LABEL)
            .chain_update(secret)
            .finalize();
        // HMAC pads a key shorter than its block with zeros: this is HMAC under `derived`.
        let mut key = [0_u8; 64];
        key[..derived.len()].copy_from_slice(&derived);
        Self {
            mac: <HmacSha256 as KeyInit>::new(&key.into()),
        }
    }

    /// The opaque form of `fields`.
    pub(super) fn seal(&self, fields: &[&str]) -> String {
        let plain = fields.join("|");
        let tag = self
            .mac
            .clone()
            .chain_update(&plain)
            .finalize()
            .into_bytes();
        let mut sealed = plain.into_bytes();
        sealed.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The fields of a cursor made by [`Self::seal`] under this key.
    fn open(&self, raw: &str) -> Result<Vec<String>, ValidationError> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let split = bytes.len().checked_sub(TAG_BYTES).ok_or_else(invalid)?;
        let (plain, tag) = bytes.split_at(split);
        self.mac
            .clone()
            .chain_update(plain)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        let plain = std::str::from_utf8(plain).map_err(|_| invalid())?;
        Ok(plain.split('|').map(str::to_owned).collect())
    }

    /// The cursor for `position` in the list of `filter` in `sort` order.
    pub fn encode(
        &self,
        position: KeysetPosition,
        sort: MarketSort,
        filter: MarketFilter,
    ) -> String {
        let key = match position.key {
            SortKey::CreatedAt(at) => at.timestamp_micros().to_string(),
            SortKey::Volume(volume) => volume.cents().to_string(),
        };
        let (sort, id) = (sort.to_string(), position.id.to_string());
        self.seal(&[VERSION, &sort, status_of(filter), &key, &id])
    }

    /// The position in `raw`, which must have been minted for this `sort` and `filter`.
    ///
    /// # Errors
    /// If `raw` is not a cursor of ours, or was minted for another listing (field `cursor`).
    pub fn decode(
        &self,
        raw: &str,
        sort: MarketSort,
        filter: MarketFilter,
    ) -> Result<KeysetPosition, ValidationError> {
        let fields = self.open(raw)?;
        let [tag, minted_sort, minted_status, key, id] = fields.as_slice() else {
            return Err(invalid());
        };
        if tag != VERSION {
            return Err(invalid());
        }
        if *minted_sort != sort.to_string() || minted_status != status_of(filter) {
            return Err(ValidationError::new(
                "cursor",
                "was issued for a different sort or status",
            ));
        }
        let number: i64 = key.parse().map_err(|_| invalid())?;
        let key = match sort.field {
            markets_domain::market::SortField::CreatedAt => {
                SortKey::CreatedAt(DateTime::from_timestamp_micros(number).ok_or_else(invalid)?)
            }
            markets_domain::market::SortField::Volume => {
                SortKey::Volume(Volume::from_cents(number).map_err(|_| invalid())?)
            }
        };
        Ok(KeysetPosition {
            key,
            id: id.parse().map_err(|_| invalid())?,
        })
    }

    /// The cursor continuing the audit trail before `id`, the last event served.
    pub fn encode_audit(&self, id: AuditEventId) -> String {
        self.seal(&[AUDIT, &id.to_string()])
    }

    /// The event id in `raw`, which must be an audit trail cursor.
    ///
    /// # Errors
    /// If `raw` is not an audit cursor of ours (field `cursor`).
    pub fn decode_audit(&self, raw: &str) -> Result<AuditEventId, ValidationError> {
        match self.open(raw)?.as_slice() {
            [tag, id] if tag == AUDIT => id.parse().map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

fn status_of(filter: MarketFilter) -> &'static str {
    filter.status.map_or("*", |status| status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use markets_domain::market::{MarketId, MarketStatus};

    fn cursors() -> Cursors {
        Cursors::new(b"the token secret of these tests, 32+ bytes")
    }

    fn position(key: SortKey) -> KeysetPosition {
        KeysetPosition {
            key,
            id: MarketId::new(),
        }
    }

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let open = MarketFilter {
            status: Some(MarketStatus::Open),
        };
        for (position, sort) in [
            (position(SortKey::CreatedAt(at)), "-created_at"),
            (
                position(SortKey::Volume(Volume::from_cents(12_345).unwrap())),
                "volume",
            ),
        ] {
            let sort = sort.parse().unwrap();
            let cursor = cursors().encode(position, sort, open);
            assert!(!cursor.contains('|'), "opaque: {cursor}");
            assert_eq!(cursors().decode(&cursor, sort, open), Ok(position));
        }
    }

    #[test]
    fn cursors_only_work_for_their_listing() {
        let sort: MarketSort = "-volume".parse().unwrap();
        let all = MarketFilter::default();
        let cursor = cursors().encode(position(SortKey::Volume(Volume::ZERO)), sort, all);
        let other_sort = cursors()
            .decode(&cursor, "volume".parse().unwrap(), all)
            .unwrap_err();
        assert!(other_sort.message.contains("different"), "{other_sort:?}");
        let closed = MarketFilter {
            status: Some(MarketStatus::Closed),
        };
        assert!(cursors().decode(&cursor, sort, closed).is_err());
    }

    #[test]
    fn audit_cursors_round_trip_and_are_not_market_cursors() {
        let id = AuditEventId::new();
        let codec = cursors();
        let raw = codec.encode_audit(id);
        assert!(!raw.contains('|'), "opaque: {raw}");
        assert_eq!(codec.decode_audit(&raw), Ok(id));
        let sort = MarketSort::default();
        let all = MarketFilter::default();
        assert!(codec.decode(&raw, sort, all).is_err());
        let market = codec.encode(position(SortKey::Volume(Volume::ZERO)), sort, all);
        assert!(codec.decode_audit(&market).is_err());
        assert_eq!(codec.decode_audit("garbage").unwrap_err().field, "cursor");
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        let sort = MarketSort::default();
        for raw in [
            "",
            "???",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("v1|-created_at|*|x|y"),
        ] {
            assert_eq!(
                cursors()
                    .decode(raw, sort, MarketFilter::default())
                    .unwrap_err()
                    .field,
                "cursor"
            );
        }
    }

    #[test]
    fn cursors_the_service_did_not_mint_are_refused() {
        let (sort, all) = (MarketSort::default(), MarketFilter::default());
        let id = MarketId::new();
        let at = "1764000000123456";
        // What a v1 cursor looked like before the MAC: well-formed, any position the client wants.
        let unsigned = URL_SAFE_NO_PAD.encode(format!("v1|-created_at|*|{at}|{id}"));
        assert_eq!(
            cursors().decode(&unsigned, sort, all).unwrap_err().field,
            "cursor"
        );
        // A genuine cursor with one bit of its position changed.
        let genuine = cursors().encode(position(SortKey::Volume(Volume::ZERO)), sort, all);
        let mut bytes = URL_SAFE_NO_PAD.decode(&genuine).unwrap();
        bytes[5] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(cursors().decode(&tampered, sort, all).is_err());
        // Another deployment's key.
        let elsewhere = Cursors::new(b"some other deployment's token secret");
        assert!(elsewhere.decode(&genuine, sort, all).is_err());
        assert!(
            elsewhere
                .decode_audit(&cursors().encode_audit(AuditEventId::new()))
                .is_err()
        );
    }
}
