//! Rate limiting at the edge: who the client is (behind trusted proxies only), the middleware
//! that applies a policy to a route, and the headers every limited response carries.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, ResponseError, web};
use ipnet::IpNet;
use markets_domain::ratelimit::{RateDecision, RatePolicy};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use super::error::AppError;
use super::middleware::ClientIp;
use crate::wiring::Services;

/// Seconds, rounded up: a client told "0" would retry at once.
fn ceil_secs(duration: Duration) -> u64 {
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

/// The addresses in `X-Forwarded-For` and `Forwarded: for=`, nearest proxy last.
fn forwarded_chain(req: &HttpRequest) -> Vec<IpAddr> {
    let headers = req.headers();
    let xff = headers
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse().ok());
    let forwarded = headers
        .get_all("forwarded")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            name.eq_ignore_ascii_case("for").then_some(value)
        })
        .filter_map(|value| {
            let value = value.trim_matches('"');
            let host = match value.strip_prefix('[') {
                Some(v6) => v6.split(']').next()?,
                None => value.split(':').next()?,
            };
            host.parse().ok()
        });
    xff.chain(forwarded).collect()
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most forwarded hop that is not a trusted proxy. A client cannot choose its own key by
/// sending `X-Forwarded-For` to a server that does not trust it.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let chain = forwarded_chain(req);
    Some(
        chain
            .iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .or(chain.first())
            .copied()
            .unwrap_or(peer),
    )
}

/// Counts `key` against `policy`; a limiter that cannot decide lets the request through.
pub async fn decide(services: &Services, policy: &RatePolicy, key: &str) -> Option<RateDecision> {
    match services.limiter.check(policy, key).await {
        Ok(decision) => {
            if !decision.allowed {
                metrics::counter!("rate_limit_rejections_total", "policy" => policy.name.clone())
                    .increment(1);
                info!(policy = %policy.name, "request refused by rate limit");
            }
            Some(decision)
        }
        Err(error) => {
            warn!(%error, policy = %policy.name, "rate limiter failed; letting the request through");
            None
        }
    }
}

/// Middleware applying `policy` per client IP: refused requests get 429 without reaching the
/// handler; every response of the route carries the rate-limit headers.
pub async fn per_client_ip(
    policy: Arc<RatePolicy>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let services = req.app_data::<web::Data<Services>>().cloned();
    let decision = match &services {
        Some(services) => {
            let ip = ClientIp::of(req.request());
            let key = ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"));
            decide(services, &policy, &key).await
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
    use actix_web::test::TestRequest;

    fn request(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut request = TestRequest::default().peer_addr(format!("{peer}:5000").parse().unwrap());
        if let Some(xff) = xff {
            request = request.insert_header(("x-forwarded-for", xff));
        }
        request.to_http_request()
    }

    fn nets(cidrs: &[&str]) -> Vec<IpNet> {
        cidrs.iter().map(|cidr| cidr.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let req = request("203.0.113.9", Some("1.2.3.4"));
        assert_eq!(client_ip(&req, &[]), "203.0.113.9".parse().ok());
        assert_eq!(
            client_ip(&req, &nets(&["10.0.0.0/8"])),
            "203.0.113.9".parse().ok()
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the first hop; the proxy appended the real one.
        let req = request("10.0.0.5", Some("6.6.6.6, 198.51.100.7, 10.0.0.2"));
        assert_eq!(client_ip(&req, &trusted), "198.51.100.7".parse().ok());
        let forwarded = TestRequest::default()
            .peer_addr("10.0.0.5:5000".parse().unwrap())
            .insert_header(("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"))
            .to_http_request();
        assert_eq!(client_ip(&forwarded, &trusted), "2001:db8::1".parse().ok());
        let no_header = request("10.0.0.5", None);
        assert_eq!(client_ip(&no_header, &trusted), "10.0.0.5".parse().ok());
    }

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
