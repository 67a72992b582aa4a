//! Opaque cursors for keyset paging. A cursor remembers the position and the sort and status
//! it was minted for, so it cannot be replayed against another listing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use markets_domain::ValidationError;
use markets_domain::market::{KeysetPosition, MarketFilter, MarketSort, SortKey, Volume};

const VERSION: &str = "v1";

fn status_of(filter: MarketFilter) -> &'static str {
    filter.status.map_or("*", |status| status.as_str())
}

/// The cursor for `position` in the list of `filter` in `sort` order.
pub fn encode(position: KeysetPosition, sort: MarketSort, filter: MarketFilter) -> String {
    let key = match position.key {
        SortKey::CreatedAt(at) => at.timestamp_micros().to_string(),
        SortKey::Volume(volume) => volume.cents().to_string(),
    };
    let plain = format!(
        "{VERSION}|{sort}|{}|{key}|{}",
        status_of(filter),
        position.id
    );
    URL_SAFE_NO_PAD.encode(plain)
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
    let invalid = || ValidationError::new("cursor", "is not a valid cursor");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
    let plain = String::from_utf8(bytes).map_err(|_| invalid())?;
    let parts: Vec<&str> = plain.split('|').collect();
    let [VERSION, minted_sort, minted_status, key, id] = parts.as_slice() else {
        return Err(invalid());
    };
    if *minted_sort != sort.to_string() || *minted_status != status_of(filter) {
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
