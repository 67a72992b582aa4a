//! Length-checked text, the shared rule behind names, descriptions and display names.

use crate::error::ValidationError;

/// Refuses text holding a NUL character. PostgreSQL cannot store one in `text` (the insert
/// would fail as an internal error) and C-based tools downstream truncate at it, so it is
/// refused here, where every adapter's input passes, as a plain validation error.
pub(crate) fn without_nul(field: &'static str, raw: &str) -> Result<(), ValidationError> {
    if raw.contains('\0') {
        return Err(ValidationError::new(
            field,
            "must not contain NUL (\\u0000) characters",
        ));
    }
    Ok(())
}

/// Trims `raw` and checks its length in characters lies in `min..=max` and that it holds no
/// NUL character.
pub(crate) fn trimmed_within(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, ValidationError> {
    without_nul(field, raw)?;
    let trimmed = raw.trim();
    let chars = trimmed.chars().count();
    if chars < min || chars > max {
        return Err(ValidationError::new(
            field,
            format!("must be {min} to {max} characters long after trimming"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Declares a `String` newtype that can only hold valid text, with `parse`, `as_str`,
/// `Display`, `TryFrom<String>` and serde support that re-validates on input.
macro_rules! validated_text {
    ($(#[$meta:meta])* $name:ident, |$raw:ident| $validate:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates (and normalises) `raw`.
            pub fn parse($raw: &str) -> Result<Self, $crate::error::ValidationError> {
                $validate.map(Self)
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::error::ValidationError;

            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub(crate) use validated_text;
