//! Property tests of everything that reads untrusted input before a service runs: the strict
//! JSON decoder for every request body and the validation behind it, the domain's value
//! constructors, the cursor decoder and query-string parsing. Whatever comes in, nothing
//! panics and every refusal is a 4xx.
//!
//! The seed is fixed so CI is deterministic; `PROPTEST_CASES` and `PROPTEST_RNG_SEED` override
//! the number of cases and the seed for a longer randomized run (see the README).

use actix_web::dev::Service;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::test as actix_test;
use actix_web::{App, HttpResponse, ResponseError, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use markets_domain::auth::Password;
use markets_domain::market::{
    Description, KeysetPosition, MarketFilter, MarketId, MarketName, MarketSort, MarketStatus,
    SearchQuery, SortField, SortKey, Volume,
};
use markets_domain::user::{DisplayName, Email};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError, TestRunner};

use super::cursor::Cursors;
use super::dto::{
    ChangeRoleRequest, CreateMarketRequest, LoginRequest, RegisterRequest, UpdateMarketRequest,
};
use super::error::AppError;
use super::extract::JsonBody;
use super::json;
use super::markets::{ListParams, SearchParams};

/// Cases per property in CI; together they run in a few seconds in a debug build.
const CI_CASES: u32 = 512;
/// The seed CI runs with.
const CI_SEED: u64 = 0x006d_6172_6b65_7473;

/// Proptest's configuration (which reads `PROPTEST_*` variables), with this suite's case count
/// and fixed seed wherever those variables are not set.
fn config(cases: u32) -> ProptestConfig {
    let configured = ProptestConfig::default();
    let set = |name: &str| std::env::var_os(name).is_some();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") {
            configured.cases
        } else {
            cases
        },
        rng_seed: if set("PROPTEST_RNG_SEED") {
            configured.rng_seed
        } else {
            RngSeed::Fixed(CI_SEED)
        },
        failure_persistence: None,
        ..configured
    }
}

/// Fails the case unless `outcome` is a success or a 4xx.
fn client_error_at_worst<T>(outcome: Result<T, AppError>) -> Result<(), TestCaseError> {
    if let Err(error) = outcome {
        prop_assert!(error.status_code().is_client_error(), "{error:?}");
    }
    Ok(())
}

/// Decodes and validates `bytes` as every request body the API reads.
fn decode_every_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    client_error_at_worst(
        json::decode::<RegisterRequest>(bytes).and_then(RegisterRequest::into_registration),
    )?;
    client_error_at_worst(json::decode::<LoginRequest>(bytes))?;
    client_error_at_worst(json::decode::<ChangeRoleRequest>(bytes))?;
    client_error_at_worst(
        json::decode::<CreateMarketRequest>(bytes).and_then(CreateMarketRequest::into_draft),
    )?;
    client_error_at_worst(
        json::decode::<UpdateMarketRequest>(bytes).and_then(UpdateMarketRequest::into_patch),
    )
}

/// Keys the request bodies and query strings read, so random documents often reach
/// validation, and repeat.
const KEYS: &[&str] = &[
    "name",
    "description",
    "status",
    "volume",
    "email",
    "password",
    "display_name",
    "role",
    "page",
    "page_size",
    "cursor",
    "limit",
    "query",
    "sort",
];

/// Any text, NUL and other control characters included, weighted towards short strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "[\\x00-\\x1f a-z@.\\-]{0,12}",
        any::<String>(),
        Just("open".to_owned()),
        Just("admin".to_owned()),
        Just("ann@example.com".to_owned()),
    ]
}

/// Mostly keys the API reads, so documents reach validation and repeat keys; sometimes any text.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_owned), 1 => text()]
}

/// `text` as a JSON string literal, escapes (and `\u0000`) included.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A JSON document as text, so objects can repeat keys, nested up to 40 levels deep.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| serde_json::Value::from(n).to_string()),
        "-?[0-9]{1,20}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?",
        text().prop_map(|s| quoted(&s)),
    ];
    leaf.prop_recursive(40, 256, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((key(), inner), 0..6).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(key, value)| format!("{}:{value}", quoted(key)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Bodies: JSON documents, their bytes cut or flipped, nesting far past the limit, and noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => json_text().prop_map(String::into_bytes),
        1 => (json_text(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
            |(json, at, byte)| {
                let mut bytes = json.into_bytes();
                if !bytes.is_empty() {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                bytes
            }
        ),
        1 => (1..200usize, "[\\[{]").prop_map(|(depth, open)| {
            let opener = if open == "[" { "[" } else { "{\"a\":" };
            opener.repeat(depth).into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Query strings: known and unknown keys with random, sometimes percent-encoded, values.
fn query_string() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        text().prop_map(|v| url::form_urlencoded::byte_serialize(v.as_bytes()).collect()),
        "[0-9a-zA-Z%&=+;\\-_.]{0,16}",
        (-5i64..200).prop_map(|n| n.to_string()),
    ];
    prop_oneof![
        prop::collection::vec((key(), value), 0..6).prop_map(|pairs| {
            pairs
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
        ".{0,40}",
    ]
}

/// Parses `query` as both listing and search parameters.
fn parse_queries(query: &str) -> Result<(), TestCaseError> {
    let request = actix_test::TestRequest::default().to_http_request();
    match web::Query::<ListParams>::from_query(query) {
        Ok(params) => client_error_at_worst(params.parse(&cursors()))?,
        Err(error) => {
            let error = super::query_error(error, &request);
            prop_assert!(error.as_response_error().status_code().is_client_error());
        }
    }
    match web::Query::<SearchParams>::from_query(query) {
        Ok(params) => client_error_at_worst(params.parse()),
        Err(error) => {
            let error = super::query_error(error, &request);
            prop_assert!(error.as_response_error().status_code().is_client_error());
            Ok(())
        }
    }
}

/// A valid value must be accepted again as it is: once built, always valid.
fn stable<T: PartialEq + std::fmt::Debug, E>(
    parsed: Result<T, E>,
    again: impl FnOnce(&T) -> Result<T, E>,
) -> Result<(), TestCaseError> {
    if let Ok(value) = parsed {
        let reparsed = again(&value).ok();
        prop_assert_eq!(reparsed.as_ref(), Some(&value));
    }
    Ok(())
}

fn sort() -> impl Strategy<Value = MarketSort> {
    proptest::sample::select(&["created_at", "-created_at", "volume", "-volume"][..])
        .prop_filter_map("a sort", |raw| raw.parse().ok())
}

fn filter() -> impl Strategy<Value = MarketFilter> {
    proptest::option::of(proptest::sample::select(MarketStatus::ALL.to_vec()))
        .prop_map(|status| MarketFilter { status })
}

/// The cursor codec of these properties.
fn cursors() -> Cursors {
    Cursors::new(b"the token secret of the property tests")
}

/// Cursor text: noise, base64 of noise, and cursor-shaped text with random parts, both unsigned
/// and signed with the service's key (so what follows the MAC check is exercised too).
fn raw_cursor() -> impl Strategy<Value = String> {
    let parts = || {
        prop::collection::vec(
            prop_oneof![text(), Just("v1".to_owned()), Just("*".to_owned())],
            0..7,
        )
    };
    prop_oneof![
        ".{0,64}",
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        parts().prop_map(|parts| URL_SAFE_NO_PAD.encode(parts.join("|"))),
        parts().prop_map(|parts| {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            cursors().seal(&parts)
        }),
    ]
}

proptest! {
    #![proptest_config(config(CI_CASES))]

    #[test]
    fn request_bodies_are_decoded_or_refused_with_a_4xx(bytes in body()) {
        decode_every_body(&bytes)?;
    }

    #[test]
    fn request_bodies_with_nul_and_repeated_keys_are_refused_with_a_4xx(
        fields in prop::collection::vec((key(), text()), 0..8),
    ) {
        let fields: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{}:{}", quoted(key), quoted(value)))
            .collect();
        decode_every_body(format!("{{{}}}", fields.join(",")).as_bytes())?;
    }

    #[test]
    fn domain_text_is_validated_without_panics_and_stays_valid(raw in text()) {
        stable(MarketName::parse(&raw), |v| MarketName::parse(v.as_str()))?;
        stable(Description::parse(&raw), |v| Description::parse(v.as_str()))?;
        stable(DisplayName::parse(&raw), |v| DisplayName::parse(v.as_str()))?;
        stable(Email::parse(&raw), |v| Email::parse(v.as_str()))?;
        stable(SearchQuery::parse(&raw), |v| SearchQuery::parse(v.as_str()))?;
        stable(Volume::parse(&raw), |v| Volume::parse(&v.to_string()))?;
        stable(raw.parse::<MarketStatus>(), |v| v.as_str().parse())?;
        stable(raw.parse::<MarketSort>(), |v| v.to_string().parse())?;
        let chars = raw.chars().count();
        prop_assert_eq!(Password::parse(&raw).is_ok(), (8..=128).contains(&chars));
        for error in [
            MarketName::parse(&raw).err(),
            Email::parse(&raw).err(),
            DisplayName::parse(&raw).err(),
        ].into_iter().flatten() {
            client_error_at_worst(Err::<(), _>(AppError::from(error)))?;
        }
        if raw.contains('\0') {
            prop_assert!(MarketName::parse(&raw).is_err());
            prop_assert!(Description::parse(&raw).is_err());
            prop_assert!(DisplayName::parse(&raw).is_err());
            prop_assert!(Email::parse(&raw).is_err());
        }
    }

    #[test]
    fn foreign_cursors_are_refused_on_the_cursor_field(
        raw in raw_cursor(), sort in sort(), filter in filter(),
    ) {
        if let Err(error) = cursors().decode(&raw, sort, filter) {
            prop_assert_eq!(error.field, "cursor");
        }
    }

    #[test]
    fn cursors_round_trip(
        micros in 0..4_102_444_800_000_000i64,
        cents in 0..=Volume::MAX.cents(),
        id in any::<u128>(),
        sort in sort(),
        filter in filter(),
    ) {
        let key = match sort.field {
            SortField::CreatedAt => SortKey::CreatedAt(DateTime::from_timestamp_micros(micros).unwrap()),
            SortField::Volume => SortKey::Volume(Volume::from_cents(cents).unwrap()),
        };
        let position = KeysetPosition { key, id: MarketId::from(uuid::Uuid::from_u128(id)) };
        let raw = cursors().encode(position, sort, filter);
        prop_assert_eq!(cursors().decode(&raw, sort, filter), Ok(position));
    }

    #[test]
    fn query_strings_are_parsed_or_refused_with_a_4xx(query in query_string()) {
        parse_queries(&query)?;
    }
}

/// A handler that only decodes and validates, as the real ones do before calling a service.
async fn validate_patch(
    _id: web::Path<MarketId>,
    _list: web::Query<ListParams>,
    JsonBody(body): JsonBody<UpdateMarketRequest>,
) -> Result<HttpResponse, AppError> {
    body.into_patch()?;
    Ok(HttpResponse::NoContent().finish())
}

/// Through actix: random ids, query strings, content types and bodies reach the extractors
/// and their error handlers as configured for the API, and never come back as a 5xx or
/// outside the envelope.
#[test]
fn requests_through_the_extractors_never_fail_with_a_5xx() {
    let runtime = actix_web::rt::Runtime::new().unwrap();
    let app = runtime.block_on(actix_test::init_service(
        App::new()
            .configure(super::extractors)
            .route("/markets/{id}", web::patch().to(validate_patch))
            .default_service(web::to(super::unknown_route)),
    ));
    let content_type = proptest::sample::select(&["application/json", "text/plain", "x"][..]);
    let id = prop_oneof![
        Just(uuid::Uuid::nil().to_string()),
        "[0-9a-f\\-]{0,40}",
        "[a-zA-Z0-9%._~\\-]{1,20}",
    ];
    let strategy = (
        id,
        query_string(),
        content_type,
        prop::collection::vec(any::<u8>(), 0..128),
        body(),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(config(CI_CASES / 4));
    let outcome = runner.run(
        &strategy,
        |(id, query, content_type, noise, json, noisy)| {
            let uri = format!("/markets/{id}?{query}");
            // A head whose URI does not parse never gets past actix's HTTP parser (400).
            if uri.parse::<actix_web::http::Uri>().is_err() {
                return Ok(());
            }
            let request = actix_test::TestRequest::patch()
                .uri(&uri)
                .insert_header((CONTENT_TYPE, content_type))
                .set_payload(if noisy { noise } else { json })
                .to_request();
            let response = runtime.block_on(async {
                match app.call(request).await {
                    Ok(response) => response.into_parts().1,
                    Err(error) => error.error_response(),
                }
            });
            let status = response.status();
            prop_assert!(
                status.is_success() || status.is_client_error(),
                "{uri}: {status}"
            );
            if status.is_client_error() {
                let body = runtime
                    .block_on(actix_web::body::to_bytes(response.into_body()))
                    .unwrap();
                let json = serde_json::from_slice::<serde_json::Value>(&body);
                prop_assert!(
                    json.is_ok_and(|json| json["success"] == false),
                    "{uri}: {status} {body:?}"
                );
            }
            Ok(())
        },
    );
    outcome.unwrap();
}
