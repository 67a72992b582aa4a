//! The HTTP layer: routes, extractors, the error envelope and the OpenAPI document. Handlers
//! parse, call a domain service and shape the response; nothing else.

/// The rate-limit middleware `$per` (`per_client_ip`, `per_user`) spending the `$budget` policy
/// of the [`RoutePolicies`] registered with the routes, for a handler's `wrap = "..."`.
macro_rules! limited {
    ($per:ident, $budget:ident) => {
        actix_web::middleware::from_fn(|req, next| {
            $crate::http::ratelimit::$per(
                |policies: &$crate::http::RoutePolicies| policies.$budget.clone(),
                req,
                next,
            )
        })
    };
}

mod audit;
mod auth;
pub mod client_ip;
pub mod conditional;
pub mod cors;
pub mod cursor;
mod docs;
mod dto;
pub mod envelope;
pub mod error;
pub mod extract;
mod health;
mod idempotency;
mod json;
mod markets;
pub mod middleware;
pub mod openapi;
pub mod outage;
mod params;
#[cfg(test)]
mod properties;
pub mod ratelimit;
pub mod routing;
mod schemas;
mod security;
mod users;

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::{HttpRequest, web};
use markets_domain::ratelimit::RatePolicy;
use std::sync::Arc;

use crate::settings::RateLimitSettings;
use error::AppError;
use routing::{Documented, Routes};

/// The largest request body accepted, in bytes (64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

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

/// Registers every route with its documentation, the extractor configuration that keeps their
/// errors in the envelope, the rate-limit policies `limits` of the limited routes, and the
/// OpenAPI document that `/openapi.json` and `/docs` serve, generated from those routes.
/// `/metrics` is among them `with_metrics` (else it has a listener of its own).
///
/// To add a route: write its handler with `#[utoipa::path(...)]` above actix-web's
/// `#[get("/path")]` (or `post`, ...; middleware as `wrap = "..."`), and add it here with
/// `.service(module::handler)`. Its 405s, its place in the document and the statuses every
/// route of its group can answer follow from that.
pub fn routes(config: &mut web::ServiceConfig, limits: &RoutePolicies, with_metrics: bool) {
    let mut documented = Documented::default();
    config
        .configure(extractors)
        .app_data(web::Data::new(limits.clone()));
    Routes::group(config, "", &mut documented, |routes| {
        root(routes, with_metrics)
    });
    config.service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(security::refusals))
            .configure(|scope| Routes::group(scope, "/api/v1", &mut documented, api)),
    );
    config.app_data(web::Data::new(openapi::ApiDocument::new(documented)));
}

/// The document of every route, `/metrics` included, as `/openapi.json` describes them: what
/// the request metrics are registered from before a server starts.
pub fn document() -> openapi::ApiDocument {
    let mut documented = Documented::default();
    Routes::describe("", &mut documented, |routes| root(routes, true));
    Routes::describe("/api/v1", &mut documented, api);
    openapi::ApiDocument::new(documented)
}

/// The routes outside `/api/v1`: probes, this document, `/docs`, and `/metrics` `with_metrics`.
fn root(routes: &mut Routes, with_metrics: bool) {
    routes
        .service(health::live)
        .service(health::ready)
        .service(openapi::served)
        .service(docs::index)
        .service(docs::asset);
    if with_metrics {
        routes.service(health::metrics);
    }
}

/// The routes under `/api/v1`. Order matters where patterns overlap: `/markets/search` before
/// `/markets/{id}`.
fn api(routes: &mut Routes) {
    routes
        .service(auth::register)
        .service(auth::login)
        .service(auth::logout)
        .service(auth::verify_email)
        .service(auth::request_password_reset)
        .service(auth::confirm_password_reset)
        .service(users::me)
        .service(users::change_role)
        .service(audit::list)
        .service(markets::list)
        .service(markets::create)
        .service(markets::search)
        .service(markets::get)
        .service(markets::update)
        .service(markets::delete);
}

/// `GET /metrics` alone, on a listener of its own.
pub fn metrics_route(config: &mut web::ServiceConfig) {
    Routes::group(config, "", &mut Documented::default(), |routes| {
        routes.service(health::metrics);
    });
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
    /// The account token routes, per client IP.
    pub account_tokens: Arc<RatePolicy>,
    /// Password reset emails, per address (applied by the handler, which parses the address).
    pub password_reset_email: Arc<RatePolicy>,
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
            account_tokens: policy(&settings.account_tokens, "account_tokens"),
            password_reset_email: policy(&settings.password_reset_email, "password_reset_email"),
        }
    }

    /// Every policy, e.g. to register its metrics at start-up.
    pub fn all(&self) -> [&RatePolicy; 6] {
        [
            &self.search,
            &self.login,
            &self.register,
            &self.writes,
            &self.account_tokens,
            &self.password_reset_email,
        ]
    }
}

/// Credentials and personal data must not be kept by browsers or shared caches.
fn no_store() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((actix_web::http::header::CACHE_CONTROL, "no-store"))
}
