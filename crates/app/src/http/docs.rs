//! `GET /docs`: Swagger UI over `/openapi.json`. Every page, script, style sheet and icon it
//! loads is compiled into the binary (utoipa-swagger-ui's `vendored` feature: the release comes
//! from crates.io, nothing is downloaded at build time) and served from here, so the docs work
//! offline and load nothing from another host; the online validator badge is switched off.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use actix_web::{HttpResponse, get, web};
use std::sync::{Arc, LazyLock};
use utoipa_swagger_ui::Config;

use super::error::AppError;

/// Where the interactive documentation lives (its assets under it).
const DOCS: &str = "/docs/";

/// Swagger UI's configuration: this service's document, tried out against this service.
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true),
    )
});

/// The documentation's page (`/docs/`), whose assets are named relative to it.
#[utoipa::path(
    operation_id = "docs",
    tag = "operations",
    responses((status = 308, description = "The documentation is at `/docs/`",
        headers(("Location" = String, description = "`/docs/`")))))]
#[get("/docs")]
pub async fn index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((LOCATION, DOCS))
        .finish()
}

/// Swagger UI's page (an empty `file`: `/docs/`) and its assets.
#[utoipa::path(
    operation_id = "docs_asset",
    tag = "operations",
    params(("file" = String, Path, example = "swagger-ui-bundle.js",
        description = "An asset of the documentation, e.g. `swagger-ui-bundle.js`; empty for its \
        page")),
    responses(
        (status = 200, description = "The page or asset",
            content((String = "text/html"), (String = "text/javascript"), (String = "text/css"),
                (String = "image/png"), (String = "application/json"))),
        (status = 404, description = "No such asset"),
    ))]
#[get("/docs/{file:.*}")]
pub async fn asset(file: web::Path<String>) -> Result<HttpResponse, AppError> {
    let not_found = || AppError::NotFound(format!("No documentation asset {file}"));
    let served = utoipa_swagger_ui::serve(&file, CONFIG.clone())
        .map_err(|error| AppError::Internal(error.to_string().into()))?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, served.content_type))
        // The assets change only with the binary; revalidating each load costs nothing here.
        .insert_header((CACHE_CONTROL, "no-cache"))
        .body(served.bytes.into_owned()))
}
