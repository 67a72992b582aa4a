//! The HTTP layer: routes, extractors, the error envelope and the OpenAPI document. Handlers
//! parse, call a domain service and shape the response; nothing else.

mod audit;
mod auth;
pub mod client_ip;
pub mod cors;
pub mod cursor;
mod dto;
pub mod envelope;
pub mod error;
pub mod extract;
mod health;
mod json;
mod markets;
pub mod middleware;
pub mod openapi;
pub mod outage;
mod params;
#[cfg(test)]
mod properties;
pub mod ratelimit;
mod security;
mod users;

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::{HttpRequest, Route, web};
use markets_domain::ratelimit::RatePolicy;
use std::sync::Arc;

use crate::settings::RateLimitSettings;
use error::AppError;

/// The largest request body accepted, in bytes (64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A route answering 405 in the envelope, with `Allow`, for methods a path does not serve.
fn not_allowed(allow: &'static str) -> Route {
    web::to(
        move || async move { Err::<actix_web::HttpResponse, _>(AppError::MethodNotAllowed(allow)) },
    )
}

/// The 404 for paths no route matches.
pub async fn unknown_route(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::NotFound(format!(
        "No route for {} {}",
        req.method(),
        req.path()
    )))
}

/// Malformed path segments (ids) are 422 with the segment named.
fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        PathError::Deserialize(inner) => inner.to_string(),
        other => other.to_string(),
    };
    let message = if message.contains("UUID") || message.contains("uuid") {
        "must be a UUID".to_owned()
    } else {
        message
    };
    AppError::invalid("id", message).into()
}

/// Malformed query strings are 422; a repeated parameter is named as the field.
fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = error.to_string();
    let field = message
        .split_once("duplicate field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map_or("query_string", |(field, _)| field)
        .to_owned();
    AppError::invalid(field, message).into()
}

/// The extractor configuration that bounds bodies and keeps extractor errors in the envelope.
fn extractors(config: &mut web::ServiceConfig) {
    config
        .app_data(web::PayloadConfig::new(BODY_LIMIT))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error));
}

/// Registers every route and the extractor configuration that keeps their errors in the envelope;
/// `limits` are the rate-limit policies of the limited routes.
pub fn routes(config: &mut web::ServiceConfig, limits: &RoutePolicies) {
    config
        .configure(extractors)
        .service(
            web::resource("/health/live")
                .route(web::get().to(health::live))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/health/ready")
                .route(web::get().to(health::ready))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/openapi.json")
                .route(web::get().to(openapi::document))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::scope("/api/v1")
                .wrap(actix_web::middleware::from_fn(security::refusals))
                .configure(|config| api(config, limits)),
        );
}

/// `GET /metrics`: beside [`routes`], or alone on a listener of its own.
pub fn metrics_route(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/metrics")
            .route(web::get().to(health::metrics))
            .default_service(not_allowed("GET")),
    );
}

/// The rate-limit policies applied to routes.
#[derive(Debug, Clone)]
pub struct RoutePolicies {
    /// Search, per client IP.
    pub search: Arc<RatePolicy>,
    /// Login, per client IP: every attempt (failures also spend the account's budgets, in the
    /// login flow).
    pub login: Arc<RatePolicy>,
    /// Registration, per client IP.
    pub register: Arc<RatePolicy>,
    /// Market writes (`POST`, `PATCH`, `DELETE`), per user.
    pub writes: Arc<RatePolicy>,
}

impl RoutePolicies {
    /// The policies `settings` configure, each named as its headers and metrics report it.
    pub fn new(settings: &RateLimitSettings) -> Self {
        let policy = |policy: &crate::settings::PolicySettings, name| Arc::new(policy.policy(name));
        Self {
            search: policy(&settings.search, "search"),
            login: policy(&settings.login, "login"),
            register: policy(&settings.register, "register"),
            writes: policy(&settings.writes, "writes"),
        }
    }

    /// Every policy, e.g. to register its metrics at start-up.
    pub fn all(&self) -> [&RatePolicy; 4] {
        [&self.search, &self.login, &self.register, &self.writes]
    }
}

/// The rate-limit middleware `$per` (`per_client_ip`, `per_user`) for a policy.
macro_rules! limited {
    ($per:ident, $policy:expr) => {{
        let policy = $policy.clone();
        actix_web::middleware::from_fn(move |req, next| ratelimit::$per(policy.clone(), req, next))
    }};
}

/// Credentials and personal data must not be kept by browsers or shared caches.
fn no_store() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((actix_web::http::header::CACHE_CONTROL, "no-store"))
}

fn api(config: &mut web::ServiceConfig, limits: &RoutePolicies) {
    config
        .service(
            web::resource("/auth/register")
                .wrap(no_store())
                .wrap(limited!(per_client_ip, limits.register))
                .route(web::post().to(auth::register))
                .default_service(not_allowed("POST")),
        )
        .service(
            web::resource("/auth/login")
                .wrap(no_store())
                .wrap(limited!(per_client_ip, limits.login))
                .route(web::post().to(auth::login))
                .default_service(not_allowed("POST")),
        )
        .service(
            web::resource("/auth/logout")
                .wrap(no_store())
                .route(web::post().to(auth::logout))
                .default_service(not_allowed("POST")),
        )
        .service(
            web::resource("/users/me")
                .wrap(no_store())
                .route(web::get().to(users::me))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/users/{id}/role")
                .wrap(no_store())
                .route(web::put().to(users::change_role))
                .default_service(not_allowed("PUT")),
        )
        .service(
            web::resource("/admin/audit")
                .wrap(no_store())
                .route(web::get().to(audit::list))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/markets")
                .route(web::get().to(markets::list))
                .route(
                    web::post()
                        .to(markets::create)
                        .wrap(limited!(per_user, limits.writes)),
                )
                .default_service(not_allowed("GET, POST")),
        )
        .service(
            web::resource("/markets/search")
                .wrap(limited!(per_client_ip, limits.search))
                .route(web::get().to(markets::search))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/markets/{id}")
                .route(web::get().to(markets::get))
                .route(
                    web::patch()
                        .to(markets::update)
                        .wrap(limited!(per_user, limits.writes)),
                )
                .route(
                    web::delete()
                        .to(markets::delete)
                        .wrap(limited!(per_user, limits.writes)),
                )
                .default_service(not_allowed("GET, PATCH, DELETE")),
        );
}
