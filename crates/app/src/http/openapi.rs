//! The OpenAPI 3 document, generated from the routes: each handler's operation comes with its
//! registration ([`super::routing`]), and this module adds what every operation of a kind shares,
//! by rules over the operations rather than a list of paths:
//!
//! - every operation can answer 400 (a header value over 8 KiB) and 500, with the error
//!   envelope;
//! - every operation under `/api/v1` reads the database, so it can answer 503;
//! - an operation with a body can answer 413 and 422, one under `/api/v1` with parameters 422;
//! - an operation marked `x-rate-limit` (the policy its route's middleware spends, and whose
//!   budget it is) carries the rate-limit fields on its responses and `Retry-After` on its 429;
//! - every 503 carries `Retry-After`, and every error response the error envelope.

use actix_web::{HttpResponse, get, web};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::error::{self, AppError};
use super::routing::Documented;

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

/// What the routes do not say: the title, the tags, the security scheme and the error shapes.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "markets", description = "Prediction-market listings: markets, users, auth. \
        Interactive documentation at `/docs`."),
    components(schemas(error::ErrorBody, error::FieldDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration and login"),
        (name = "users", description = "Users and roles"),
        (name = "markets", description = "Markets"),
        (name = "admin", description = "The audit trail"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
struct ApiDoc;

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

fn header(kind: Type, description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(kind)))
        .description(Some(description))
        .build()
}

/// An error response in the envelope.
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Documents `status` on `operation` unless its handler already did.
fn ensure(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(error_response(description)));
}

/// Adds the statuses and headers every operation of its kind shares (see the module docs).
fn complete(path: &str, operation: &mut Operation) {
    ensure(
        operation,
        "400",
        "A header value over 8 KiB (or a business rule, where this operation says so)",
    );
    ensure(operation, "500", "Internal server error");
    let api = path.starts_with("/api/v1/");
    if api {
        ensure(
            operation,
            "503",
            "The database (or another required service) is down",
        );
    }
    if operation.request_body.is_some() {
        ensure(operation, "413", "Body over 64 KiB");
        ensure(
            operation,
            "422",
            "Malformed JSON, a wrong type or an invalid field",
        );
    }
    if api && operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        ensure(operation, "422", "An invalid parameter");
    }
    let limit = operation
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("x-rate-limit"))
        .and_then(|limit| limit.get("per"))
        .and_then(|per| per.as_str())
        .map(str::to_owned);
    for (status, response) in &mut operation.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        let is_error = status.starts_with('4') || status.starts_with('5');
        if is_error && response.content.is_empty() && status != "304" {
            *response = error_response(&response.description);
        }
        if status == "503" || status == "429" {
            let retry = header(Type::Integer, "Seconds after which a retry may succeed");
            response
                .headers
                .insert("Retry-After".to_owned(), RefOr::T(retry));
        }
        // A per-user budget is spent once the caller is known: a 401 comes before any count.
        let counted = match limit.as_deref() {
            Some("user") => status != "401",
            Some(_) => true,
            None => false,
        };
        if counted {
            for (name, kind, description) in RATE_LIMIT_HEADERS {
                response
                    .headers
                    .insert(name.to_owned(), RefOr::T(header(kind, description)));
            }
        }
    }
}

/// The served document, built once from what the routes documented.
#[derive(Clone)]
pub struct ApiDocument {
    document: utoipa::openapi::OpenApi,
    json: web::Bytes,
}

impl ApiDocument {
    /// The document of the routes that documented `documented`.
    pub fn new(documented: Documented) -> Self {
        let mut document = ApiDoc::openapi();
        document.paths.merge(documented.paths);
        let components = document.components.get_or_insert_with(Default::default);
        components.schemas.extend(documented.schemas);
        for (path, item) in &mut document.paths.paths {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                complete(path, operation);
            }
        }
        let json = serde_json::to_vec(&document).unwrap_or_default().into();
        Self { document, json }
    }

    /// The document.
    pub fn document(&self) -> &utoipa::openapi::OpenApi {
        &self.document
    }
}

impl std::fmt::Debug for ApiDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDocument")
            .field("paths", &self.document.paths.paths.len())
            .finish_non_exhaustive()
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this service",
        body = Object, content_type = "application/json")))]
#[get("/openapi.json")]
pub async fn served(document: web::Data<ApiDocument>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document.json.clone()))
}

#[cfg(test)]
mod tests {
    use crate::http::{RoutePolicies, routes};
    use crate::settings::Settings;
    use actix_web::{App, test};

    /// The document the routes generate, as served.
    pub(crate) async fn served_document() -> serde_json::Value {
        let settings = Settings::load_from(&std::collections::HashMap::new()).unwrap();
        let limits = RoutePolicies::new(&settings.rate_limit);
        let app =
            test::init_service(App::new().configure(|config| routes(config, &limits, true))).await;
        let request = test::TestRequest::get().uri("/openapi.json").to_request();
        test::call_and_read_body_json(&app, request).await
    }

    fn headers(
        document: &serde_json::Value,
        path: &str,
        method: &str,
        status: &str,
    ) -> Vec<String> {
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

    #[actix_web::test]
    async fn limited_operations_document_429_and_the_rate_limit_fields() {
        let document = served_document().await;
        for (path, method) in [
            ("/api/v1/auth/register", "post"),
            ("/api/v1/auth/login", "post"),
            ("/api/v1/markets/search", "get"),
            ("/api/v1/markets", "post"),
            ("/api/v1/markets/{id}", "patch"),
            ("/api/v1/markets/{id}", "delete"),
        ] {
            let refused = headers(&document, path, method, "429");
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
        let created = headers(&document, "/api/v1/markets", "post", "201");
        assert!(created.contains(&"RateLimit".to_owned()));
        assert!(headers(&document, "/api/v1/markets", "post", "401").is_empty());
        assert!(headers(&document, "/api/v1/markets", "get", "200").is_empty());
        let down = headers(&document, "/api/v1/markets", "get", "503");
        assert_eq!(down, ["Retry-After"]);
    }

    #[actix_web::test]
    async fn operation_ids_are_unique() {
        let document = served_document().await;
        let mut ids = Vec::new();
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                ids.push(operation["operationId"].as_str().unwrap().to_owned());
            }
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }

    /// Every `$ref` in `value`.
    fn references(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    found.push(target.clone());
                }
                map.values().for_each(|value| references(value, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    #[actix_web::test]
    async fn every_reference_resolves() {
        let document = served_document().await;
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} is not in the document"
            );
        }
    }
}
