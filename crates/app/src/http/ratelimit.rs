//! Rate limiting at the edge: the middleware that applies a policy to a route per client
//! address (resolved by [`super::client_ip`]), and the headers every limited response carries.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};
use markets_domain::ratelimit::{RateDecision, RatePolicy};
use std::sync::Arc;
use std::time::Duration;

use super::client_ip::ClientIp;
use super::error::AppError;
use crate::wiring::AppState;

/// Seconds, rounded up: a client told "0" would retry at once.
pub(super) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Sets `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` from `decision`.
pub fn set_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    let values = [
        ("ratelimit-limit", u64::from(decision.limit)),
        ("ratelimit-remaining", u64::from(decision.remaining)),
        ("ratelimit-reset", ceil_secs(decision.reset_after)),
    ];
    for (name, value) in values {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// The 429 for a refused `decision`, with `Retry-After` and the rate-limit headers.
pub fn refusal(decision: &RateDecision) -> actix_web::HttpResponse {
    let error = AppError::RateLimited {
        retry_after: ceil_secs(decision.retry_after).max(1),
    };
    let mut response = error.error_response();
    set_headers(response.headers_mut(), decision);
    response
}

/// Middleware applying `policy` per client IP: refused requests get 429 without reaching the
/// handler; every response of the route carries the rate-limit headers.
pub async fn per_client_ip(
    policy: Arc<RatePolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let decision = match &state {
        Some(state) => {
            let ip = ClientIp::of(req.request());
            let key = ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"));
            state.limits().decide(&policy, &key).await
        }
        None => None,
    };
    match decision {
        Some(decision) if !decision.allowed => {
            Ok(req.into_response(refusal(&decision)).map_into_right_body())
        }
        decision => {
            let mut response = next.call(req).await?;
            if let Some(decision) = decision {
                set_headers(response.headers_mut(), &decision);
            }
            Ok(response.map_into_left_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_round_retry_after_up() {
        let decision = RateDecision::new(
            false,
            10,
            0,
            Duration::from_millis(59_100),
            Duration::from_millis(5_900),
        );
        let response = refusal(&decision);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers().get("retry-after").unwrap(), "6");
        assert_eq!(response.headers().get("ratelimit-limit").unwrap(), "10");
        assert_eq!(response.headers().get("ratelimit-remaining").unwrap(), "0");
        assert_eq!(response.headers().get("ratelimit-reset").unwrap(), "60");
    }
}
