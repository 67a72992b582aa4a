//! The stored form of a cache entry.

use markets_domain::market::Market;

/// The entry format tag; bump it when the encoding changes.
pub(crate) const FORMAT: &str = "m1";

/// The marker a removal leaves behind.
pub(crate) const REMOVED: &str = "m1|removed";

/// `market` as stored.
pub(crate) fn encode(market: &Market) -> Result<String, serde_json::Error> {
    Ok(format!(
        "{FORMAT}|{}|{}",
        market.version,
        serde_json::to_string(market)?
    ))
}

/// The market in a stored entry, if it is one in the current format.
pub(crate) fn decode(stored: &str) -> Option<Market> {
    let rest = stored.strip_prefix(FORMAT)?.strip_prefix('|')?;
    let (_version, json) = rest.split_once('|')?;
    serde_json::from_str(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use markets_domain::market::{
        Creator, Description, MarketId, MarketName, MarketStatus, Volume,
    };
    use markets_domain::user::{DisplayName, UserId};

    fn market() -> Market {
        Market {
            id: MarketId::new(),
            name: MarketName::parse("Rain?").unwrap(),
            description: Description::parse("Will it rain | or not?").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::parse("12.34").unwrap(),
            creator: Creator {
                id: UserId::new(),
                display_name: DisplayName::parse("Ann").unwrap(),
            },
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 7,
        }
    }

    #[test]
    fn entries_round_trip_with_their_version_in_front() {
        let market = market();
        let stored = encode(&market).unwrap();
        assert!(stored.starts_with("m1|7|{"), "{stored}");
        assert_eq!(decode(&stored), Some(market));
    }

    #[test]
    fn other_formats_and_garbage_are_misses() {
        let json = serde_json::to_string(&market()).unwrap();
        for stored in [
            REMOVED.to_owned(),
            format!("m0|7|{json}"),
            "m1|7|{oops".into(),
            json,
        ] {
            assert_eq!(decode(&stored), None, "{stored}");
        }
    }
}
