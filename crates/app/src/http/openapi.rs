//! The OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, auth, dto, error, health, markets, users};

/// Declares the bearer scheme the secured operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Who a limited operation's budget belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Per {
    /// The client address: every response carries the fields.
    ClientIp,
    /// The authenticated user: a 401 comes before any count, so it carries none.
    User,
}

/// The operations behind a rate limit (as `super::api` wraps them).
const LIMITED: [(&str, HttpMethod, Per); 6] = [
    ("/api/v1/auth/register", HttpMethod::Post, Per::ClientIp),
    ("/api/v1/auth/login", HttpMethod::Post, Per::ClientIp),
    ("/api/v1/markets/search", HttpMethod::Get, Per::ClientIp),
    ("/api/v1/markets", HttpMethod::Post, Per::User),
    ("/api/v1/markets/{id}", HttpMethod::Patch, Per::User),
    ("/api/v1/markets/{id}", HttpMethod::Delete, Per::User),
];

/// The rate-limit fields, as every counted response of a limited operation carries them.
const RATE_LIMIT_HEADERS: [(&str, Type, &str); 5] = [
    (
        "RateLimit-Limit",
        Type::Integer,
        "Requests allowed per window",
    ),
    ("RateLimit-Remaining", Type::Integer, "Requests left now"),
    (
        "RateLimit-Reset",
        Type::Integer,
        "Seconds until the budget is whole again",
    ),
    (
        "RateLimit-Policy",
        Type::String,
        "draft-ietf-httpapi-ratelimit-headers-10: `\"<policy>\";q=<limit>;w=<window seconds>`",
    ),
    (
        "RateLimit",
        Type::String,
        "draft-ietf-httpapi-ratelimit-headers-10: `\"<policy>\";r=<remaining>;t=<seconds to reset>`",
    ),
];

/// Documents the rate-limit fields on the responses of the [`LIMITED`] operations, and
/// `Retry-After` on their 429s, so that no annotation has to repeat them.
struct RateLimitHeaders;

fn header(kind: Type, description: &str) -> RefOr<Header> {
    RefOr::T(
        HeaderBuilder::new()
            .schema(Some(Object::with_type(kind)))
            .description(Some(description))
            .build(),
    )
}

impl Modify for RateLimitHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, method, per) in LIMITED {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match method {
                HttpMethod::Get => item.get.as_mut(),
                HttpMethod::Post => item.post.as_mut(),
                HttpMethod::Patch => item.patch.as_mut(),
                HttpMethod::Delete => item.delete.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else {
                continue;
            };
            for (status, response) in &mut operation.responses.responses {
                let RefOr::T(response) = response else {
                    continue;
                };
                if per == Per::User && status == "401" {
                    continue;
                }
                for (name, kind, description) in RATE_LIMIT_HEADERS {
                    response
                        .headers
                        .insert(name.to_owned(), header(kind, description));
                }
                if status == "429" {
                    let retry = header(Type::Integer, "Seconds until a request would be allowed");
                    response.headers.insert("Retry-After".to_owned(), retry);
                }
            }
        }
    }
}

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "markets", description = "Prediction-market listings: markets, users, auth."),
    paths(
        auth::register, auth::login, auth::logout,
        users::me, users::change_role,
        markets::list, markets::search, markets::get, markets::create, markets::update,
        markets::delete, audit::list,
        health::live, health::ready, health::metrics,
    ),
    components(schemas(error::ErrorBody, error::FieldDetail, dto::MarketResponse,
        dto::MarketSummaryResponse, dto::UserResponse, dto::TokenResponse, audit::AuditEventResponse)),
    modifiers(&BearerAuth, &RateLimitHeaders),
    tags(
        (name = "auth", description = "Registration and login"),
        (name = "users", description = "Users and roles"),
        (name = "markets", description = "Markets"),
        (name = "admin", description = "The audit trail"),
        (name = "operations", description = "Probes"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(path: &str, method: &str, status: &str) -> Vec<String> {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let response = &document["paths"][path][method]["responses"][status];
        assert!(
            response.is_object(),
            "{path} {method} documents no {status}"
        );
        response["headers"]
            .as_object()
            .map(|headers| headers.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn limited_operations_document_429_and_the_rate_limit_fields() {
        for (path, method) in [
            ("/api/v1/auth/register", "post"),
            ("/api/v1/auth/login", "post"),
            ("/api/v1/markets/search", "get"),
            ("/api/v1/markets", "post"),
            ("/api/v1/markets/{id}", "patch"),
            ("/api/v1/markets/{id}", "delete"),
        ] {
            let refused = headers(path, method, "429");
            for name in [
                "RateLimit-Policy",
                "RateLimit",
                "RateLimit-Limit",
                "Retry-After",
            ] {
                assert!(
                    refused.contains(&name.to_owned()),
                    "{path} {method}: {refused:?}"
                );
            }
        }
        assert!(headers("/api/v1/markets", "post", "201").contains(&"RateLimit".to_owned()));
        assert!(headers("/api/v1/markets", "post", "401").is_empty());
        assert!(headers("/api/v1/markets", "get", "200").is_empty());
    }
}
