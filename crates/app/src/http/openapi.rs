//! The OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::HttpResponse;
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
    modifiers(&BearerAuth),
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
