//! Strict decoding of JSON request bodies. serde_json alone accepts duplicate keys (the last
//! one wins, so two layers reading one body can disagree about it) and nesting down to 128
//! levels; bodies here are refused, as 422s naming the field, when a key repeats at any depth or
//! arrays and objects nest deeper than [`MAX_DEPTH`].
//!
//! The check is a pass of its own before the typed decode: a serde visitor that walks the
//! document without building it (only object keys are kept, to compare them), stops at the
//! first problem, and never recurses deeper than [`MAX_DEPTH`]. A wrapper around the typed
//! decode could do both in one pass, but would have to re-implement every `Deserializer`,
//! `Visitor` and access method; bodies are at most 64 KiB, so the second walk costs
//! microseconds.

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

use super::error::AppError;

/// The deepest nesting of arrays and objects accepted in a request body. Request bodies are
/// flat objects; 32 leaves room for any future shape while keeping recursion shallow.
pub const MAX_DEPTH: usize = 32;

/// Decodes `bytes` as one JSON `T`, refusing duplicate keys, nesting deeper than
/// [`MAX_DEPTH`], type errors and trailing characters, each as a 422 naming the field.
///
/// # Errors
/// [`AppError::Validation`] for any malformed or ill-typed body.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    check_shape(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(rejection)?;
    // Anything after the JSON value makes the body malformed, not ignorable.
    deserializer
        .end()
        .map_err(|_| AppError::invalid("body", "trailing characters after the JSON value"))?;
    Ok(value)
}

/// The first duplicate key or excess of nesting in `bytes`, or a syntax error.
fn check_shape(bytes: &[u8]) -> Result<(), AppError> {
    let mut track = serde_path_to_error::Track::new();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let tracked = serde_path_to_error::Deserializer::new(&mut deserializer, &mut track);
    Shape { depth: 0 }
        .deserialize(tracked)
        .map_err(|error| rejection(serde_path_to_error::Error::new(track.path(), error)))
}

fn too_deep() -> String {
    format!("is nested deeper than {MAX_DEPTH} levels")
}

const DUPLICATE: &str = "appears more than once";

/// The 422 for a decoding error. Excess nesting is reported on `body`: its path would echo up
/// to [`MAX_DEPTH`] of the caller's keys back.
fn rejection(error: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let (field, message) = locate(&error);
    if message == too_deep() {
        return AppError::invalid("body", message);
    }
    AppError::invalid(field, message)
}

/// The field a serde error points at, and its message without serde's line/column suffix.
fn locate(error: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let message = error.inner().to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or_default()
        .to_owned();
    let path = error.path().to_string();
    let field = match message.strip_prefix("missing field `") {
        Some(rest) => rest.trim_end_matches('`').to_owned(),
        None if path == "." || path == "?" => "body".to_owned(),
        None => path,
    };
    (field, message)
}

/// Walks one JSON value that sits inside `depth` arrays or objects.
struct Shape {
    depth: usize,
}

impl Shape {
    /// The seed for the values of a container, or the error if that container is one too deep.
    fn enter<E: de::Error>(&self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom(too_deep()));
        }
        Ok(Self { depth })
    }
}

impl<'de> DeserializeSeed<'de> for Shape {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Shape {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq
            .next_element_seed(Shape { depth: inner.depth })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                // Failing inside the value makes the tracked path end with the repeated key.
                return map.next_value_seed(Duplicate);
            }
            map.next_value_seed(Shape { depth: inner.depth })?;
        }
        Ok(())
    }
}

/// The value of a repeated key: refused without being read.
struct Duplicate;

impl<'de> DeserializeSeed<'de> for Duplicate {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(DUPLICATE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        volume: u32,
    }

    /// The field and message of the 422 `json` is refused with.
    fn refusal<T: DeserializeOwned + fmt::Debug>(json: &str) -> (String, String) {
        match decode::<T>(json.as_bytes()) {
            Err(AppError::Validation(details)) if details.len() == 1 => {
                (details[0].field.clone(), details[0].message.clone())
            }
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn decoding_errors_name_their_field() {
        assert_eq!(refusal::<Body>(r#"{"name": 1, "volume": 2}"#).0, "name");
        assert_eq!(
            refusal::<Body>(r#"{"name": "x", "volume": -2}"#).0,
            "volume"
        );
        assert_eq!(refusal::<Body>(r#"{"volume": 2}"#).0, "name");
        let (field, message) = refusal::<Body>("{not json");
        assert_eq!(field, "body");
        assert!(!message.contains("line"), "{message}");
        assert_eq!(
            refusal::<Body>(r#"{"name": "x", "volume": 2} {}"#).0,
            "body"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let top = r#"{"name": "a", "volume": 1, "name": "b"}"#;
        assert_eq!(refusal::<Body>(top), ("name".into(), DUPLICATE.into()));
        // Even where the typed decode would ignore the key, or keep only a raw value.
        let ignored = r#"{"name": "a", "volume": 1, "x": 1, "x": 1}"#;
        assert_eq!(refusal::<Body>(ignored).0, "x");
        let nested = r#"{"a": [{"b": {"c": 1, "c": 2}}]}"#;
        assert_eq!(refusal::<Value>(nested).0, "a[0].b.c");
        // Keys are compared after unescaping.
        assert_eq!(refusal::<Value>(r#"{"k": 1, "\u006b": 2}"#).0, "k");
        assert!(decode::<Value>(br#"{"a": {"k": 1}, "b": {"k": 1}}"#).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(decode::<Value>(nested(MAX_DEPTH).as_bytes()).is_ok());
        let (field, message) = refusal::<Value>(&nested(MAX_DEPTH + 1));
        assert_eq!((field.as_str(), message), ("body", too_deep()));
        // Far past serde_json's own limit of 128: still our 422, no stack overflow.
        let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert_eq!(refusal::<Value>(&objects).0, "body");
        // Brackets inside strings are text, not nesting.
        let text = format!(r#"["{}"]"#, "[".repeat(100));
        assert!(decode::<Value>(text.as_bytes()).is_ok());
    }
}
