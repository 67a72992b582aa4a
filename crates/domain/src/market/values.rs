//! Validated market values: once built, always valid.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

use crate::error::ValidationError;
use crate::id::uuid_id;
use crate::text::{Layout, name_within, validated_text, visible};

uuid_id!(
    /// Identifies a market.
    MarketId
);

validated_text!(
    /// A market's name: 1 to 200 characters after trimming, in Unicode form NFC, with no
    /// control, bidirectional-control or zero-width character.
    MarketName,
    |raw| name_within("name", raw, 1, 200)
);

validated_text!(
    /// A market's description: up to 5000 characters, kept as written (no trimming); line
    /// breaks and tabs are its only control characters, and it holds nothing invisible.
    Description,
    |raw| bounded_description(raw)
);

fn bounded_description(raw: &str) -> Result<String, ValidationError> {
    visible("description", raw, Layout::Paragraphs)?;
    if raw.chars().count() > Description::MAX_CHARS {
        return Err(ValidationError::new(
            "description",
            format!("must be at most {} characters long", Description::MAX_CHARS),
        ));
    }
    Ok(raw.to_owned())
}

impl Description {
    /// The longest description accepted, in characters.
    pub const MAX_CHARS: usize = 5000;
}

/// Where a market is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarketStatus {
    /// Accepting trades.
    Open,
    /// No longer trading, outcome not yet known.
    Closed,
    /// Outcome settled; the market is frozen.
    Resolved,
}

impl MarketStatus {
    /// Every status.
    pub const ALL: [MarketStatus; 3] = [Self::Open, Self::Closed, Self::Resolved];

    /// The status's name as stored and as sent over the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Resolved => "resolved",
        }
    }
}

impl fmt::Display for MarketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MarketStatus {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ValidationError::new("status", "must be one of open, closed, resolved"))
    }
}

/// A traded volume: non-negative, two decimal places, at most 13 digits before the point,
/// held exactly as a count of hundredths (it maps to `NUMERIC(15,2)`).
///
/// It serialises as a JSON number: every value has at most 15 significant digits, which an
/// `f64` round-trips exactly, so `12.30` goes out as `12.3` and nothing is lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Volume(i64);

impl Volume {
    /// No volume.
    pub const ZERO: Volume = Volume(0);
    /// The largest volume, `9999999999999.99`.
    pub const MAX: Volume = Volume(999_999_999_999_999);

    /// A volume of `cents` hundredths.
    ///
    /// # Errors
    /// If `cents` is negative or above [`Volume::MAX`].
    pub fn from_cents(cents: i64) -> Result<Self, ValidationError> {
        if (0..=Self::MAX.0).contains(&cents) {
            Ok(Self(cents))
        } else {
            Err(Self::invalid())
        }
    }

    /// The volume in hundredths.
    pub fn cents(self) -> i64 {
        self.0
    }

    /// Parses a plain decimal such as `"12"`, `"12.3"` or `"12.34"`.
    ///
    /// # Errors
    /// On signs, exponents, more than two decimals or more than 13 integer digits.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let well_formed = !whole.is_empty()
            && whole.len() <= 13
            && digits(whole)
            && fraction.len() <= 2
            && digits(fraction)
            && !(raw.contains('.') && fraction.is_empty());
        if !well_formed {
            return Err(Self::invalid());
        }
        let cents = format!("{whole}{fraction:0<2}")
            .parse::<i64>()
            .map_err(|_| Self::invalid())?;
        Self::from_cents(cents)
    }

    /// The volume as an `f64`, exact in the sense that formatting it gives back the decimal.
    pub fn as_f64(self) -> f64 {
        // At most 15 significant digits: the shortest f64 representation is the decimal itself.
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    fn invalid() -> ValidationError {
        ValidationError::new(
            "volume",
            "must be a number from 0 to 9999999999999.99 with at most two decimal places",
        )
    }
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl FromStr for Volume {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Volume {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Volume {
    /// Accepts a JSON number or a decimal string; a number is judged by its shortest decimal
    /// form, so `12.345` is refused rather than rounded.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Integer(u64),
            Number(f64),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Integer(n) => n.to_string(),
            Raw::Number(n) if n.is_finite() && n >= 0.0 => n.to_string(),
            Raw::Number(_) => return Err(serde::de::Error::custom(Self::invalid().message)),
            Raw::Text(s) => s,
        };
        Self::parse(&text).map_err(|error| serde::de::Error::custom(error.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            MarketName::parse("  Rain? ").map(String::from),
            Ok("Rain?".into())
        );
        assert!(MarketName::parse(" \t ").is_err());
        assert!(MarketName::parse(&"x".repeat(200)).is_ok());
        assert_eq!(
            MarketName::parse(&"x".repeat(201)).map_err(|e| e.field),
            Err("name")
        );
    }

    #[test]
    fn text_with_nul_is_refused_with_its_field() {
        assert_eq!(
            MarketName::parse("Rain\0?").map_err(|e| e.field),
            Err("name")
        );
        let error = Description::parse("a\0b").unwrap_err();
        assert_eq!(error.field, "description");
        assert!(error.message.contains("NUL"), "{error}");
        // Trimming does not hide it: a NUL is not whitespace.
        assert!(MarketName::parse("\0").is_err());
    }

    #[test]
    fn descriptions_may_be_empty_but_not_huge() {
        assert!(Description::parse("").is_ok());
        assert!(Description::parse(&"ü".repeat(5000)).is_ok());
        assert_eq!(
            Description::parse(&"ü".repeat(5001)).map_err(|e| e.field),
            Err("description")
        );
    }

    #[test]
    fn volumes_parse_exactly() {
        let cents = |s: &str| Volume::parse(s).map(Volume::cents);
        assert_eq!(cents("0"), Ok(0));
        assert_eq!(cents("12"), Ok(1200));
        assert_eq!(cents("12.3"), Ok(1230));
        assert_eq!(cents("12.34"), Ok(1234));
        assert_eq!(cents("9999999999999.99"), Ok(999_999_999_999_999));
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "+1",
            "1e3",
            "12.345",
            "10000000000000",
            "1,5",
            " 1",
        ] {
            assert!(Volume::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn volumes_display_with_two_decimals() {
        assert_eq!(
            Volume::parse("7.5").map(|v| v.to_string()),
            Ok("7.50".into())
        );
        assert_eq!(Volume::ZERO.to_string(), "0.00");
    }

    #[test]
    fn volumes_round_trip_through_json_numbers() {
        for raw in ["0", "0.01", "12.3", "1234567.89", "9999999999999.99"] {
            let volume = Volume::parse(raw).unwrap();
            let json = serde_json::to_string(&volume).unwrap();
            // serde_json writes whole floats as `12.0`: still the same number, nothing rounded.
            assert_eq!(
                json.trim_end_matches(".0"),
                raw,
                "serialised as the decimal itself"
            );
            assert_eq!(serde_json::from_str::<Volume>(&json).unwrap(), volume);
        }
    }

    #[test]
    fn json_volumes_with_excess_precision_are_refused() {
        for bad in ["12.345", "-1", "1e20", "\"abc\""] {
            assert!(serde_json::from_str::<Volume>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::from_str::<Volume>("\"5.5\"").ok(),
            Volume::parse("5.5").ok()
        );
    }

    #[test]
    fn statuses_parse_by_name() {
        assert_eq!("resolved".parse(), Ok(MarketStatus::Resolved));
        assert!("Open".parse::<MarketStatus>().is_err());
    }
}
