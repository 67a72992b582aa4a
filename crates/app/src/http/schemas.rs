//! The JSON Schemas of the contract's validated values, written once here so that every request
//! and response that carries one states the same constraint. Each is the closest sound schema of
//! its domain rule: what it accepts the service accepts, and what it refuses the service refuses;
//! where JSON Schema cannot say a rule exactly (characters counted after Unicode normalisation,
//! the 10,000-row depth of offset paging, a cursor's signature) the description says it.
//!
//! Patterns use only `\uXXXX` escapes and character classes, which ECMA-262, Python's `re` and
//! Rust's `regex` read alike.

use std::borrow::Cow;
use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// What Rust's `str::trim` removes: the Unicode `White_Space` characters.
const WHITESPACE: &str = r"\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// The whitespace that one-line text may carry around it: [`WHITESPACE`] less its control
/// characters (which one-line text refuses anywhere).
const SPACES: &str = r" \u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// Control characters (Unicode category Cc).
const CONTROLS: &str = r"\u0000-\u001F\u007F-\u009F";
/// What free text refuses: control characters other than tab, line feed and carriage return.
const PARAGRAPH_CONTROLS: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";
/// Bidirectional controls and zero-width characters, refused in all text.
const INVISIBLE: &str = r"\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF";

/// A pattern for text of 1 to `max` characters once `around` is trimmed off, holding none of
/// `refused` (nor, at either end of what is kept, any of `around`).
fn trimmed(max: usize, around: &str, refused: &str) -> String {
    let edge = format!("[^{refused}{around}]");
    format!(
        "^[{around}]*{edge}(?:[^{refused}]{{0,{inner}}}{edge})?[{around}]*$",
        inner = max - 2
    )
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// Declares a named schema (a component of the document) built by `$schema` (an `Object`, an
/// `AllOf`, ...).
macro_rules! named_schema {
    ($(#[$meta:meta])* $name:ident, $title:literal, $schema:expr) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let schema: Schema = $schema.into();
                RefOr::T(schema)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($title)
            }
        }
    };
}

named_schema!(
    /// `name` of a market.
    MarketNameSchema,
    "MarketName",
    string()
        .pattern(Some(trimmed(200, SPACES, &format!("{CONTROLS}{INVISIBLE}"))))
        .description(Some(
            "1 to 200 characters after trimming whitespace (counted once composed to Unicode \
             NFC, which the service stores); no control, bidirectional-control or zero-width \
             character.",
        ))
        .examples(["Will it rain in Paris on Friday?"])
        .build()
);

named_schema!(
    /// `description` of a market.
    DescriptionSchema,
    "Description",
    string()
        .max_length(Some(5000))
        .pattern(Some(format!("^[^{PARAGRAPH_CONTROLS}{INVISIBLE}]*$")))
        .description(Some(
            "Up to 5000 characters, kept as written (may be empty); tab, line feed and carriage \
             return are its only control characters, and it holds no bidirectional-control or \
             zero-width character.",
        ))
        .build()
);

named_schema!(
    /// `display_name` of a user.
    DisplayNameSchema,
    "DisplayName",
    string()
        .pattern(Some(trimmed(80, SPACES, &format!("{CONTROLS}{INVISIBLE}"))))
        .description(Some(
            "1 to 80 characters after trimming whitespace (counted once composed to Unicode \
             NFC); no control, bidirectional-control or zero-width character.",
        ))
        .examples(["Ann"])
        .build()
);

named_schema!(
    /// A registration's `email`.
    EmailSchema,
    "Email",
    string()
        .max_length(Some(254))
        .pattern(Some(
            "^[!-?A-~]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\\.)+\
             [A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$",
        ))
        .description(Some(
            "An email address: a local part of at most 64 bytes, `@`, and a domain of two or \
             more dot-separated labels of letters, digits and inner hyphens; at most 254 \
             characters. Stored trimmed and lower-cased. The pattern is the ASCII form; the \
             service also accepts letters and digits beyond ASCII in the domain, and any \
             visible character but whitespace in the local part.",
        ))
        .examples(["ann@example.com"])
        .build()
);

named_schema!(
    /// A registration's `password`.
    PasswordSchema,
    "Password",
    string()
        .min_length(Some(8))
        .max_length(Some(128))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .description(Some("8 to 128 characters."))
        .build()
);

named_schema!(
    /// A search's `query`.
    SearchQuerySchema,
    "SearchQuery",
    string()
        .pattern(Some(trimmed(500, WHITESPACE, r"\u0000")))
        .description(Some(
            "1 to 500 characters after trimming whitespace; no NUL.",
        ))
        .examples(["rain in Paris"])
        .build()
);

/// The largest volume, `9999999999999.99`, as the schemas state it.
const MAX_VOLUME: f64 = 9_999_999_999_999.99;

named_schema!(
    /// A volume as a request gives it.
    VolumeInput,
    "VolumeInput",
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0.0))
        .maximum(Some(MAX_VOLUME))
        .multiple_of(Some(0.01))
        .description(Some(
            "A JSON number from 0 to 9999999999999.99 with at most two decimal places, judged \
             by its shortest decimal form (`12.345` is refused, not rounded).",
        ))
        .examples([serde_json::json!(1234.5)])
        .build()
);

named_schema!(
    /// A volume as a response gives it.
    Volume,
    "Volume",
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0.0))
        .maximum(Some(MAX_VOLUME))
        .description(Some(
            "From 0 to 9999999999999.99, exact to two decimal places (sent in its shortest \
             form: `12.30` as `12.3`).",
        ))
        .examples([serde_json::json!(1234.5)])
        .build()
);

/// A string schema allowing exactly `values`.
fn one_of_strings(values: &[&str], description: &str) -> Object {
    string()
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

named_schema!(
    /// A market's `status`.
    StatusSchema,
    "MarketStatus",
    one_of_strings(&["open", "closed", "resolved"], "Where a market is in its life.")
);

named_schema!(
    /// The `sort` of a market listing.
    SortSchema,
    "MarketSort",
    one_of_strings(
        &["created_at", "-created_at", "volume", "-volume"],
        "A field to sort by, descending with a leading `-`.",
    )
);

named_schema!(
    /// A user's `role`.
    RoleSchema,
    "Role",
    one_of_strings(
        &["user", "moderator", "admin"],
        "`user` may read and write, `moderator` also delete, `admin` also manage roles and \
         read the audit trail.",
    )
);

named_schema!(
    /// An error's `code`.
    ErrorCodeSchema,
    "ErrorCode",
    one_of_strings(&super::error::CODES, "A stable machine-readable code.")
);

named_schema!(
    /// The body of `PATCH /markets/{id}`: the fields of [`super::dto::UpdateMarketRequest`], at
    /// least one of them (other keys are ignored, so they do not count).
    MarketPatchSchema,
    "MarketPatch",
    {
        let at_least_one = ["name", "description", "status", "volume"]
            .into_iter()
            .fold(AnyOfBuilder::new(), |any, field| {
                any.item(ObjectBuilder::new().required(field))
            });
        AllOfBuilder::new()
            .item(<super::dto::UpdateMarketRequest as PartialSchema>::schema())
            .item(at_least_one)
            .description(Some("At least one field; none may be `null`."))
            .build()
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_text_patterns_bound_what_is_kept() {
        let pattern = trimmed(3, " ", r"\u0000");
        assert_eq!(
            pattern,
            r"^[ ]*[^\u0000 ](?:[^\u0000]{0,1}[^\u0000 ])?[ ]*$"
        );
    }
}
