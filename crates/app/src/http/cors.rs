//! CORS: which browser origins may call the API, from configuration. Preflight requests are
//! answered here, before routing, so they never count against rate limits; and because this
//! wraps the routes, refusals (429 included) carry the CORS headers a browser needs to read them.

use actix_cors::Cors;
use actix_web::http::{Method, header};

use crate::settings::CorsSettings;

fn is_localhost(origin: &str) -> bool {
    ["http://localhost", "http://127.0.0.1"].iter().any(|host| {
        origin.strip_prefix(host).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix(':')
                    .is_some_and(|port| port.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

/// The CORS middleware for `settings`; with no origins configured, no cross-origin request is
/// allowed.
pub fn cors(settings: &CorsSettings) -> Cors {
    let allowed = settings.allowed_origins.clone();
    let localhost = settings.allow_localhost;
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            let origin = origin.to_str().unwrap_or_default();
            allowed.iter().any(|allowed| allowed == origin) || (localhost && is_localhost(origin))
        })
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            "etag",
            "location",
            "idempotent-replayed",
            "x-request-id",
            "x-cache",
            "x-search-mode",
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        ])
        .max_age(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_http_origins_count_as_localhost() {
        for local in [
            "http://localhost",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
        ] {
            assert!(is_localhost(local), "{local}");
        }
        for remote in [
            "http://localhost.evil.com",
            "https://localhost:3000",
            "http://127.0.0.1:80x",
            "http://10.0.0.1",
        ] {
            assert!(!is_localhost(remote), "{remote}");
        }
    }
}
