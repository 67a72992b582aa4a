//! Request ids, bounded headers, and the last line of defence against panics.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use tracing::{Instrument, Span, error, info, info_span, warn};

use super::client_ip::{ClientAddressing, ClientIp};
use super::error::AppError;
use super::outage::Outages;
use crate::wiring::AppState;

/// The header carrying the request id, in both directions.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// A caller's id is kept when it is 1 to 128 characters of `[A-Za-z0-9._:-]`: enough for
/// UUIDs and trace ids, nothing that could forge a log line or a header.
fn sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn new_id() -> HeaderValue {
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// An error that escaped the handlers (or a panic), carrying the request id so the response
/// actix builds from it still echoes `X-Request-Id`.
#[derive(Debug)]
struct Tagged {
    error: Error,
    id: HeaderValue,
}

impl std::fmt::Display for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for Tagged {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error.as_response_error().status_code()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let mut response = self.error.error_response();
        harden(response.headers_mut(), self.id.clone());
        response
    }
}

/// Gives every request an id (the caller's, if sane), runs it inside a span carrying that id,
/// echoes it in `X-Request-Id`, and logs its outcome once under that id: a 5xx with its cause,
/// at error, or at warn for a 503 (the first of a dependency's outage also at error).
/// A panic in a handler becomes a logged 500 in the envelope instead of a dropped connection.
///
/// The outcome (route, status, latency) is a field of that one line, not recorded on the span:
/// each record on a span re-serialises the span's fields (tracing-subscriber's JSON keeps them
/// as JSON text), which at info cost more than the line itself.
///
/// The request is not cloned across the inner call: actix's router needs it uniquely owned.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .filter(|value| sane(value))
        .cloned()
        .unwrap_or_else(new_id);
    let ip = client_ip(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    if let Some(ip) = ip {
        req.extensions_mut().insert(ip);
    }
    let started = Instant::now();
    let method = method_label(req.method());
    // Strings, not `%`-formatted values: a log layer takes a `&str` as it is, while a
    // `Display` value goes through the formatting machinery for every span.
    let span = info_span!(
        "request",
        request_id = id.to_str().unwrap_or("invalid"),
        method,
        client_ip = %ip.map_or_else(|| "unknown".to_owned(), |ip| ip.address.to_string()),
        user_agent = user_agent(&req),
        market_id = tracing::field::Empty,
    );
    let outages = req
        .app_data::<actix_web::web::Data<Outages>>()
        .map(|outages| outages.clone().into_inner());
    let outcome = AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let error = match outcome {
        Ok(Ok(mut response)) => {
            let route = response
                .request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned());
            let outcome = Outcome::record(method, &route, response.status(), started);
            settle(outages.as_deref());
            let failure = response.response().error();
            if !failure
                .is_some_and(|failure| log_failure(&span, &outcome, failure, outages.as_deref()))
            {
                span.in_scope(|| outcome.completed());
            }
            harden(response.headers_mut(), id);
            return Ok(response);
        }
        Ok(Err(error)) => error,
        Err(_) => AppError::Internal("handler panicked".into()).into(),
    };
    let status = error.as_response_error().status_code();
    let outcome = Outcome::record(method, "unmatched", status, started);
    settle(outages.as_deref());
    if !log_failure(&span, &outcome, &error, outages.as_deref()) {
        span.in_scope(|| outcome.failed(&error));
    }
    Err(Tagged { error, id }.into())
}

/// Logs a request that failed with a 5xx, once, in its span; `false` (nothing logged) for any
/// other error. A 503 is a warning: it names the service, and the cause when one is down. The
/// first failure of a dependency's outage (per `outages`; every one, without them) is also
/// logged at error, so that an outage under load is one error line, not one per request.
fn log_failure(
    span: &Span,
    outcome: &Outcome<'_>,
    failure: &Error,
    outages: Option<&Outages>,
) -> bool {
    let _entered = span.enter();
    let Outcome {
        route,
        status,
        latency_ms,
    } = *outcome;
    match failure.as_error::<AppError>() {
        Some(AppError::Unavailable { service, cause, .. }) => {
            if outages.is_none_or(|outages| outages.failed(service, Instant::now())) {
                error!(route, service, cause = %cause, "{service} unavailable: outage begins");
            }
            warn!(route, status, latency_ms, service, cause = %cause, "request failed");
        }
        Some(AppError::Saturated { service, .. }) => {
            warn!(route, status, latency_ms, service, "request failed");
        }
        _ if is_fault(failure) => outcome.failed(failure),
        _ => return false,
    }
    true
}

/// Logs, outside any request, each dependency outage that has gone quiet.
fn settle(outages: Option<&Outages>) {
    let Some(outages) = outages else { return };
    for recovered in outages.settle(Instant::now()) {
        let service = recovered.service;
        info!(
            service,
            failed_requests = recovered.failures,
            outage_ms = u64::try_from(recovered.lasted.as_millis()).unwrap_or(u64::MAX),
            "{service} recovered: no failure for {} s",
            outages.quiet().as_secs()
        );
    }
}

/// Whether `failure` is worth an error line: any 5xx but a 503 ([`AppError::is_fault`]).
fn is_fault(failure: &Error) -> bool {
    failure.as_error::<AppError>().map_or_else(
        || failure.as_response_error().status_code().is_server_error(),
        AppError::is_fault,
    )
}

/// The longest header value accepted, in bytes.
///
/// actix-http only bounds the request head as a whole: past 128 KiB, or past 96 headers, its
/// HTTP/1 decoder answers a bare `431 Request Header Fields Too Large` (no body, no request id)
/// and closes the connection, before any of our code runs. Below that, a single header of
/// 100 KiB would still reach the token verifier, the proxy-header parser and the log line.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Refuses a request carrying a header value longer than [`MAX_HEADER_BYTES`] with 400
/// `bad_request` in the envelope (the contract has no 431). It is the outermost middleware, so
/// neither the request-id, client-address and CORS middlewares nor any extractor reads such a
/// header; the refusal gets a fresh request id and is counted as an unmatched route.
pub async fn bounded_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let oversized = req
        .headers()
        .iter()
        .find(|(_, value)| value.len() > MAX_HEADER_BYTES)
        .map(|(name, _)| name.clone());
    let Some(name) = oversized else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let started = Instant::now();
    let method = method_label(req.method());
    let refusal = AppError::BadRequest(format!(
        "Header `{name}` is longer than {MAX_HEADER_BYTES} bytes"
    ));
    let mut response = req.error_response(refusal);
    Outcome::record(method, "unmatched", response.status(), started);
    harden(response.headers_mut(), new_id());
    Ok(response.map_into_right_body())
}

/// Headers every response carries: its request id, and `nosniff` so a browser never guesses a
/// type other than the one declared.
fn harden(headers: &mut actix_web::http::header::HeaderMap, id: HeaderValue) {
    headers.insert(X_REQUEST_ID, id);
    headers.insert(
        actix_web::http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The method as a metric and log label: the standard methods by name, any other token as
/// `other`. Any token is a valid method to actix, so a raw method would let a client mint label
/// values, each a new series that the registry keeps for ever.
pub(super) fn method_label(method: &Method) -> &'static str {
    [
        ("GET", Method::GET),
        ("HEAD", Method::HEAD),
        ("POST", Method::POST),
        ("PUT", Method::PUT),
        ("PATCH", Method::PATCH),
        ("DELETE", Method::DELETE),
        ("OPTIONS", Method::OPTIONS),
        ("TRACE", Method::TRACE),
        ("CONNECT", Method::CONNECT),
    ]
    .into_iter()
    .find(|(_, standard)| standard == method)
    .map_or("other", |(name, _)| name)
}

/// How a request ended, as its log line reports it.
#[derive(Debug, Clone, Copy)]
struct Outcome<'a> {
    route: &'a str,
    status: u16,
    latency_ms: f64,
}

impl<'a> Outcome<'a> {
    /// Counts the request in the metrics and returns its outcome.
    fn record(method: &str, route: &'a str, status: StatusCode, started: Instant) -> Self {
        let elapsed = started.elapsed();
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.as_u16().to_string()),
        ];
        metrics::counter!("http_requests_total", &labels).increment(1);
        metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
        Self {
            route,
            status: status.as_u16(),
            latency_ms: elapsed.as_secs_f64() * 1000.0,
        }
    }

    /// The line of a request that succeeded (or failed with a 4xx).
    fn completed(&self) {
        let Self {
            route,
            status,
            latency_ms,
        } = *self;
        info!(route, status, latency_ms, "request completed");
    }

    /// The line of a request that failed with a fault.
    fn failed(&self, error: &Error) {
        let Self {
            route,
            status,
            latency_ms,
        } = *self;
        error!(route, status, latency_ms, error = %error, "request failed");
    }
}

/// The client, believing the forwarding header of the configured trusted proxies only.
fn client_ip(req: &ServiceRequest) -> Option<ClientIp> {
    match req.app_data::<actix_web::web::Data<AppState>>() {
        Some(state) => state.client_addressing().resolve(req.request()),
        None => ClientAddressing::peer_only().resolve(req.request()),
    }
}

/// The user agent, its first 200 characters at most, so a client cannot flood the log line.
fn user_agent(req: &ServiceRequest) -> &str {
    let agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    agent
        .char_indices()
        .nth(200)
        .map_or(agent, |(end, _)| &agent[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_sane_ids_are_kept() {
        for good in ["abc", "0b1c-uuid-like", "trace:1.2_3", &"x".repeat(128)] {
            assert!(sane(&HeaderValue::from_str(good).unwrap()), "{good}");
        }
        for bad in ["", "has space", "semi;colon", "tab\there", &"x".repeat(129)] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(!sane(&value), "{bad:?}");
        }
    }

    async fn serve(
        handler: actix_web::Route,
        request: actix_web::test::TestRequest,
    ) -> actix_web::HttpResponse {
        use actix_web::dev::Service;
        let app = actix_web::test::init_service(
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(request_id))
                .route("/", handler),
        )
        .await;
        match app.call(request.to_request()).await {
            Ok(response) => response.into_parts().1.map_into_boxed_body(),
            Err(error) => error.error_response(),
        }
    }

    #[actix_web::test]
    async fn sane_ids_are_echoed_and_others_replaced() {
        let ok = || actix_web::web::get().to(|| async { "ok" });
        let kept = serve(
            ok(),
            actix_web::test::TestRequest::get().insert_header(("x-request-id", "abc-123")),
        )
        .await;
        assert_eq!(kept.headers().get(&X_REQUEST_ID).unwrap(), "abc-123");
        let replaced = serve(
            ok(),
            actix_web::test::TestRequest::get().insert_header(("x-request-id", "a b")),
        )
        .await;
        let id = replaced
            .headers()
            .get(&X_REQUEST_ID)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }

    #[actix_web::test]
    async fn over_long_headers_are_400_in_the_envelope() {
        use actix_web::dev::Service;
        let app = actix_web::test::init_service(
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(bounded_headers))
                .route("/", actix_web::web::get().to(|| async { "ok" })),
        )
        .await;
        let request = |size: usize| {
            actix_web::test::TestRequest::get()
                .insert_header(("x-long", "a".repeat(size)))
                .to_request()
        };
        let fits = app.call(request(MAX_HEADER_BYTES)).await.unwrap();
        assert_eq!(fits.status(), 200);
        let refused = app.call(request(MAX_HEADER_BYTES + 1)).await.unwrap();
        assert_eq!(refused.status(), 400);
        let body = actix_web::body::to_bytes(refused.into_body())
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "bad_request");
        assert!(json["error"].as_str().unwrap().contains("x-long"), "{json}");
    }

    /// The lines logged, as JSON, while `body` runs on this thread.
    async fn logged<F: std::future::Future<Output = ()>>(body: F) -> Vec<serde_json::Value> {
        let (subscriber, captured) = crate::telemetry::capture::subscriber();
        let guard = tracing::subscriber::set_default(subscriber);
        body.await;
        drop(guard);
        captured.lines()
    }

    fn at<'a>(lines: &'a [serde_json::Value], level: &str) -> Vec<&'a serde_json::Value> {
        lines.iter().filter(|line| line["level"] == level).collect()
    }

    /// The lines logged for requests to `paths` of an app whose outages end after `quiet`:
    /// `/down` fails for want of the database, `/broken` with a 500, `/up` succeeds.
    async fn log_of(quiet: Duration, paths: &[&str]) -> Vec<serde_json::Value> {
        use actix_web::dev::Service;
        use actix_web::web;
        logged(async {
            let app = actix_web::test::init_service(
                actix_web::App::new()
                    .app_data(web::Data::new(Outages::new(quiet)))
                    .wrap(actix_web::middleware::from_fn(request_id))
                    .route(
                        "/down",
                        web::get().to(|| async {
                            Err::<&str, _>(AppError::unavailable("database", "connection refused"))
                        }),
                    )
                    .route(
                        "/broken",
                        web::get().to(|| async {
                            Err::<&str, _>(AppError::Internal("corrupt row".into()))
                        }),
                    )
                    .route("/up", web::get().to(|| async { "ok" })),
            )
            .await;
            for path in paths {
                let request = actix_web::test::TestRequest::get().uri(path);
                app.call(request.to_request()).await.unwrap();
            }
        })
        .await
    }

    #[actix_web::test]
    async fn an_outage_is_one_error_line_and_a_warning_per_request() {
        const REQUESTS: usize = 20;
        let mut paths = vec!["/down"; REQUESTS];
        paths.push("/broken");
        let lines = log_of(crate::http::outage::QUIET_PERIOD, &paths).await;
        let errors = at(&lines, "ERROR");
        let warnings = at(&lines, "WARN");
        assert_eq!(
            errors.len(),
            2,
            "the outage's first failure, and the 500: {errors:#?}"
        );
        assert_eq!(errors[0]["message"], "database unavailable: outage begins");
        assert_eq!(errors[1]["message"], "request failed");
        assert_eq!(warnings.len(), REQUESTS, "{warnings:#?}");
        for line in errors[..1].iter().chain(&warnings) {
            assert_eq!(line["service"], "database");
            assert_eq!(line["cause"], "connection refused");
        }
        assert!(at(&lines, "INFO").is_empty(), "one line per request");
    }

    #[actix_web::test]
    async fn a_quiet_service_is_logged_recovered_once() {
        let lines = log_of(Duration::ZERO, &["/down", "/up", "/up"]).await;
        let recovered: Vec<_> = at(&lines, "INFO")
            .into_iter()
            .filter(|line| line["service"] == "database")
            .collect();
        assert_eq!(recovered.len(), 1, "{lines:#?}");
        assert_eq!(
            recovered[0]["message"],
            "database recovered: no failure for 0 s"
        );
        assert_eq!(recovered[0]["failed_requests"], 1);
    }

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_in_the_envelope() {
        let boom = actix_web::web::get().to(|| async {
            if true {
                panic!("boom: secret internals");
            }
            "unreachable"
        });
        let request = actix_web::test::TestRequest::get().insert_header(("x-request-id", "req-1"));
        let response = serve(boom, request).await;
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers().get(&X_REQUEST_ID).unwrap(), "req-1");
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "internal");
        assert_eq!(json["error"], "Internal server error");
        assert!(!json.to_string().contains("secret"));
    }
}
