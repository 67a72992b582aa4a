//! Opaque cursors for keyset paging, one codec for every cursor-paged listing. A cursor is the
//! base64 of `|`-joined fields led by a tag naming its listing, so clients cannot read or forge
//! positions and a cursor of one listing is refused by another. Market cursors also remember the
//! sort and status they were minted for, so they cannot be replayed against another market list.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use markets_domain::ValidationError;
use markets_domain::audit::AuditEventId;
use markets_domain::market::{KeysetPosition, MarketFilter, MarketSort, SortKey, Volume};

/// The tag of market list cursors.
const VERSION: &str = "v1";
/// The tag of audit trail cursors.
const AUDIT: &str = "a1";

fn invalid() -> ValidationError {
    ValidationError::new("cursor", "is not a valid cursor")
}

/// The opaque form of `fields`.
fn seal(fields: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(fields.join("|"))
}

/// The fields of a cursor made by [`seal`].
fn open(raw: &str) -> Result<Vec<String>, ValidationError> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
    Ok(plain.split('|').map(str::to_owned).collect())
}

fn status_of(filter: MarketFilter) -> &'static str {
    filter.status.map_or("*", |status| status.as_str())
}

/// The cursor for `position` in the list of `filter` in `sort` order.
pub fn encode(position: KeysetPosition, sort: MarketSort, filter: MarketFilter) -> String {
    let key = match position.key {
        SortKey::CreatedAt(at) => at.timestamp_micros().to_string(),
        SortKey::Volume(volume) => volume.cents().to_string(),
    };
    let (sort, id) = (sort.to_string(), position.id.to_string());
    seal(&[VERSION, &sort, status_of(filter), &key, &id])
}

/// The position in `raw`, which must have been minted for this `sort` and `filter`.
///
/// # Errors
/// If `raw` is not a cursor of ours, or was minted for another listing (field `cursor`).
pub fn decode(
    raw: &str,
    sort: MarketSort,
    filter: MarketFilter,
) -> Result<KeysetPosition, ValidationError> {
    let fields = open(raw)?;
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
pub fn encode_audit(id: AuditEventId) -> String {
    seal(&[AUDIT, &id.to_string()])
}

/// The event id in `raw`, which must be an audit trail cursor.
///
/// # Errors
/// If `raw` is not an audit cursor of ours (field `cursor`).
pub fn decode_audit(raw: &str) -> Result<AuditEventId, ValidationError> {
    match open(raw)?.as_slice() {
        [tag, id] if tag == AUDIT => id.parse().map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markets_domain::market::{MarketId, MarketStatus};

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
            let cursor = encode(position, sort, open);
            assert!(!cursor.contains('|'), "opaque: {cursor}");
            assert_eq!(decode(&cursor, sort, open), Ok(position));
        }
    }

    #[test]
    fn cursors_only_work_for_their_listing() {
        let sort: MarketSort = "-volume".parse().unwrap();
        let all = MarketFilter::default();
        let cursor = encode(position(SortKey::Volume(Volume::ZERO)), sort, all);
        let other_sort = decode(&cursor, "volume".parse().unwrap(), all).unwrap_err();
        assert!(other_sort.message.contains("different"), "{other_sort:?}");
        let closed = MarketFilter {
            status: Some(MarketStatus::Closed),
        };
        assert!(decode(&cursor, sort, closed).is_err());
    }

    #[test]
    fn audit_cursors_round_trip_and_are_not_market_cursors() {
        let id = AuditEventId::new();
        let raw = encode_audit(id);
        assert!(!raw.contains('|'), "opaque: {raw}");
        assert_eq!(decode_audit(&raw), Ok(id));
        let sort = MarketSort::default();
        let all = MarketFilter::default();
        assert!(decode(&raw, sort, all).is_err());
        let market = encode(position(SortKey::Volume(Volume::ZERO)), sort, all);
        assert!(decode_audit(&market).is_err());
        assert_eq!(decode_audit("garbage").unwrap_err().field, "cursor");
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
                decode(raw, sort, MarketFilter::default())
                    .unwrap_err()
                    .field,
                "cursor"
            );
        }
    }
}
