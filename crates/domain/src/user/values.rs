//! Validated user values.

use crate::error::ValidationError;
use crate::id::uuid_id;
use crate::text::{Layout, name_within, validated_text, visible};

uuid_id!(
    /// Identifies a user.
    UserId
);

validated_text!(
    /// An email address, trimmed and lower-cased so that uniqueness is case-insensitive.
    ///
    /// Validation is deliberately structural (one `@`, a non-empty local part, a dotted domain of
    /// letters, digits and hyphens, no spaces, control or invisible characters, at most 254 characters); whether it
    /// receives mail is for a confirmation email to find out.
    Email,
    |raw| normalise_email(raw)
);

validated_text!(
    /// The name shown for a user: 1 to 80 characters after trimming, in Unicode form NFC, with
    /// no control, bidirectional-control or zero-width character.
    DisplayName,
    |raw| name_within("display_name", raw, 1, 80)
);

fn normalise_email(raw: &str) -> Result<String, ValidationError> {
    visible("email", raw, Layout::Line)?;
    let email = raw.trim().to_lowercase();
    let invalid = || ValidationError::new("email", "must be a valid email address");
    if email.chars().count() > 254 || email.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if local.is_empty() || local.len() > 64 || !domain.contains('.') || !labels_ok {
        return Err(invalid());
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        let email = Email::parse("  Alice@Example.COM ").map(String::from);
        assert_eq!(email, Ok("alice@example.com".to_owned()));
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "al ice@example.com",
            "alice@exa_mple.com",
            "alice@-example.com",
            "alice@example..com",
            "a@b@example.com",
        ] {
            assert_eq!(
                Email::parse(bad).map_err(|e| e.field),
                Err("email"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn text_with_nul_is_refused_with_its_field() {
        let email = Email::parse("ann\0@example.com").unwrap_err();
        assert_eq!(email.field, "email");
        assert!(email.message.contains("NUL"), "{email}");
        assert_eq!(
            DisplayName::parse("Ann\0").map_err(|e| e.field),
            Err("display_name")
        );
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Ann ").map(String::from),
            Ok("Ann".into())
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(80)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(81)).is_err());
    }

    #[test]
    fn deserialising_validates() {
        let parsed: Result<Email, _> = serde_json::from_str("\"not-an-email\"");
        assert!(parsed.is_err());
    }
}
