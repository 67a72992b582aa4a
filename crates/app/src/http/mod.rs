//! The HTTP layer: routes and their mapping to services.

mod health;

use actix_web::web;

/// Registers every route.
pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::scope("/health").configure(health::routes));
}
