//! Checked text, the shared rules behind names, descriptions, display names and emails: no NUL,
//! nothing invisible or reordering, lengths in characters, names in one Unicode form.

use unicode_normalization::UnicodeNormalization;

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

/// Which control characters a field keeps: none in a one-line field, line breaks and tabs in
/// free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One line: names, display names, emails.
    Line,
    /// Free text: descriptions.
    Paragraphs,
}

/// Characters that show nothing yet change what text means to a reader: bidirectional controls
/// (which can make `txt.exe` read as `exe.txt`) and zero-width characters (which make two equal
/// looking names differ).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Refuses NUL (with its own message), control characters other than what `layout` keeps, and
/// invisible characters: text a user sees should be the text that is stored.
pub(crate) fn visible(
    field: &'static str,
    raw: &str,
    layout: Layout,
) -> Result<(), ValidationError> {
    without_nul(field, raw)?;
    let kept = |c: char| layout == Layout::Paragraphs && matches!(c, '\n' | '\r' | '\t');
    match raw
        .chars()
        .find(|&c| (c.is_control() && !kept(c)) || is_invisible(c))
    {
        Some(c) => Err(ValidationError::new(
            field,
            format!(
                "must not contain control, bidirectional-control or zero-width characters \
                 (found U+{:04X})",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// A one-line name: visible, in Unicode normalisation form C (so that one name typed two ways
/// is stored one way), trimmed, `min..=max` characters long.
pub(crate) fn name_within(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, ValidationError> {
    visible(field, raw, Layout::Line)?;
    let composed: String = raw.nfc().collect();
    trimmed_within(field, &composed, min, max)
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

#[cfg(test)]
mod tests {
    use crate::market::{Description, MarketName};
    use crate::user::{DisplayName, Email};

    #[test]
    fn names_refuse_controls_bidi_controls_and_zero_width_characters() {
        for sneaky in [
            "Rain\u{202E}exe.txt",
            "Ra\u{200B}in",
            "Rain\u{2066}",
            "Tab\there",
            "Bell\u{7}",
            "C1\u{85}",
            "\u{FEFF}Rain",
        ] {
            let name = MarketName::parse(sneaky).map_err(|e| e.field);
            assert_eq!(name, Err("name"), "{sneaky:?}");
            let display = DisplayName::parse(sneaky).map_err(|e| e.field);
            assert_eq!(display, Err("display_name"), "{sneaky:?}");
        }
        assert!(Email::parse("ann\u{200D}@example.com").is_err());
        assert!(MarketName::parse("Will BTC beat $100k? ¿Sí? 北京").is_ok());
    }

    #[test]
    fn descriptions_keep_line_breaks_and_tabs_only() {
        assert!(Description::parse("Line one\r\nLine two\n\tindented").is_ok());
        assert!(Description::parse("escape \u{1B}[31m").is_err());
        assert!(Description::parse("hidden \u{200F} mark").is_err());
    }

    #[test]
    fn names_are_stored_in_normalisation_form_c() {
        let decomposed = MarketName::parse("Cafe\u{301} au lait").unwrap();
        assert_eq!(decomposed.as_str(), "Caf\u{E9} au lait");
        assert_eq!(decomposed, MarketName::parse("Caf\u{E9} au lait").unwrap());
        let display = DisplayName::parse("  Zoe\u{308} ").unwrap();
        assert_eq!(display.as_str(), "Zo\u{EB}");
    }
}
