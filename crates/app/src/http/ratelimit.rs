//! Rate limiting at the edge: the middleware that applies a policy to a route per client
//! address (resolved by [`super::client_ip`]) or per authenticated user, and the headers every
//! limited response carries.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, ResponseError, web};
use markets_domain::ratelimit::{RateDecision, RatePolicy};
use std::sync::Arc;
use std::time::Duration;

use super::RoutePolicies;
use super::client_ip::ClientIp;
use super::error::AppError;
use super::extract::Caller;
use crate::wiring::AppState;

/// Seconds, rounded up: a client told "0" would retry at once.
pub(super) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Sets `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` from `decision`.
fn set_counters(headers: &mut HeaderMap, decision: &RateDecision) {
    let values = [
        ("ratelimit-limit", u64::from(decision.limit)),
        ("ratelimit-remaining", u64::from(decision.remaining)),
        ("ratelimit-reset", ceil_secs(decision.reset_after)),
    ];
    for (name, value) in values {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// Sets the counters and, as in draft-ietf-httpapi-ratelimit-headers-10, `RateLimit-Policy`
/// (the quota `q` per window `w` seconds) and `RateLimit` (the `r` remaining, and `t` seconds
/// until the quota is whole again), both structured-field lists naming `policy`.
pub fn set_headers(headers: &mut HeaderMap, policy: &RatePolicy, decision: &RateDecision) {
    set_counters(headers, decision);
    let name = &policy.name;
    let fields = [
        (
            "ratelimit-policy",
            format!(
                "\"{name}\";q={};w={}",
                policy.limit,
                ceil_secs(policy.period)
            ),
        ),
        (
            "ratelimit",
            format!(
                "\"{name}\";r={};t={}",
                decision.remaining,
                ceil_secs(decision.reset_after)
            ),
        ),
    ];
    for (field, value) in fields {
        // Policy names come from this binary; one that is not a header value is left out.
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(field), value);
        }
    }
}

/// The 429 for a refused `decision` of `policy`, with `Retry-After` and the rate-limit headers.
pub fn refusal(policy: &RatePolicy, decision: &RateDecision) -> actix_web::HttpResponse {
    let error = AppError::RateLimited {
        retry_after: ceil_secs(decision.retry_after).max(1),
    };
    let mut response = error.error_response();
    set_headers(response.headers_mut(), policy, decision);
    response
}

/// Middleware applying the policy `budget` picks per client IP (IPv6 clients per network, see
/// [`ClientIp::rate_key`]): refused requests get 429 without reaching the handler; every
/// response of the route carries the rate-limit headers.
pub async fn per_client_ip(
    budget: impl Fn(&RoutePolicies) -> Arc<RatePolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(policy) = policy_of(&req, budget) else {
        return Ok(unconfigured(req));
    };
    let key = ClientIp::rate_key(req.request());
    limit(&policy, &key, req, next).await
}

/// The policy `budget` picks from the routes' [`RoutePolicies`].
fn policy_of(
    req: &ServiceRequest,
    budget: impl Fn(&RoutePolicies) -> Arc<RatePolicy>,
) -> Option<Arc<RatePolicy>> {
    req.app_data::<web::Data<RoutePolicies>>()
        .map(|policies| budget(policies))
}

/// A limited route registered without the policies: a wiring mistake, refused as a 500 rather
/// than served unlimited.
fn unconfigured<B>(req: ServiceRequest) -> ServiceResponse<EitherBody<B>> {
    let error = AppError::Internal("the rate-limit policies are not registered".into());
    req.into_response(error.error_response())
        .map_into_right_body()
}

/// Middleware applying the policy `budget` picks per authenticated user. Anonymous requests go on uncounted (their
/// handler refuses them with 401); a token that does not verify is refused here, as the handler
/// would. The verified caller is kept for the handler's extractor, so a token is checked once.
pub async fn per_user(
    budget: impl Fn(&RoutePolicies) -> Arc<RatePolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(policy) = policy_of(&req, budget) else {
        return Ok(unconfigured(req));
    };
    let caller = match Caller::extract(req.request()).await {
        Ok(caller) => caller,
        Err(error) => {
            return Ok(req
                .into_response(error.error_response())
                .map_into_right_body());
        }
    };
    match caller.session {
        Some(session) => {
            let key = format!("user:{}", session.user.id);
            limit(&policy, &key, req, next).await
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// Counts `key` against `policy`: a refusal is answered here; otherwise the request goes on and
/// its response gets the headers. A limiter that cannot decide lets it through, headerless.
async fn limit<B: MessageBody + 'static>(
    policy: &RatePolicy,
    key: &str,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let decision = match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.limits().decide(policy, key).await,
        None => None,
    };
    match decision {
        Some(decision) if !decision.allowed => Ok(req
            .into_response(refusal(policy, &decision))
            .map_into_right_body()),
        decision => {
            let mut response = next.call(req).await?;
            // A handler that refused under a budget of its own (login's per account) has set
            // that budget's headers: they, not this route's, explain its 429.
            let own_budget = response.headers().contains_key("ratelimit-limit");
            if let Some(decision) = decision.filter(|_| !own_budget) {
                set_headers(response.headers_mut(), policy, &decision);
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
        let policy = RatePolicy::new("login", 10, Duration::from_secs(60));
        let response = refusal(&policy, &decision);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers().get("retry-after").unwrap(), "6");
        assert_eq!(response.headers().get("ratelimit-limit").unwrap(), "10");
        assert_eq!(response.headers().get("ratelimit-remaining").unwrap(), "0");
        assert_eq!(response.headers().get("ratelimit-reset").unwrap(), "60");
        let fields = response.headers().get("ratelimit-policy").unwrap();
        assert_eq!(fields, "\"login\";q=10;w=60");
    }

    #[test]
    fn the_draft_fields_name_the_policy_its_quota_and_what_is_left() {
        let policy = RatePolicy::new("search", 60, Duration::from_secs(60));
        let decision = RateDecision::new(true, 60, 59, Duration::from_millis(900), Duration::ZERO);
        let mut headers = HeaderMap::new();
        set_headers(&mut headers, &policy, &decision);
        assert_eq!(
            headers.get("ratelimit-policy").unwrap(),
            "\"search\";q=60;w=60"
        );
        assert_eq!(headers.get("ratelimit").unwrap(), "\"search\";r=59;t=1");
        assert_eq!(headers.get("ratelimit-remaining").unwrap(), "59");
    }
}
