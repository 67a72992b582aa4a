//! Security events at the HTTP edge: the request's context (request id and client address) as
//! an extractor, the caller of a request for events raised outside its handler, and the
//! middleware that reports refusals. What is logged and recorded, and how, is the application's
//! policy (`markets_application::security`).

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};
use markets_application::security::{Refusal, RequestContext};
use markets_domain::user::UserId;
use std::future::{Ready, ready};

use super::client_ip::ClientIp;
use super::error::AppError;
use super::middleware::{RequestId, method_label};
use crate::wiring::AppState;

/// The context of `req`: its id and its client's address (and, for IPv6, the network limits
/// count it by), as the request-id middleware resolved them.
pub fn context_of(req: &HttpRequest) -> RequestContext {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|id| String::from_utf8_lossy(id.0.as_bytes()).into_owned())
        .unwrap_or_default();
    let client = req.extensions().get::<ClientIp>().copied();
    let ip = client.map(|client| client.address.to_string());
    let network = client
        .filter(|client| client.network.prefix_len() < client.network.max_prefix_len())
        .map(|client| client.network.to_string());
    RequestContext {
        request_id,
        ip,
        network,
    }
}

/// Extracts the request's [`RequestContext`] for a handler that records events.
#[derive(Debug, Clone)]
pub struct Context(pub RequestContext);

impl FromRequest for Context {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(context_of(req))))
    }
}

/// The authenticated user of a request, left in its extensions by the `Caller` extractor so
/// that events raised outside the handler (denials) can name them.
#[derive(Debug, Clone, Copy)]
pub struct CallerId(pub UserId);

/// Reports every 403 under `/api/v1` as a [`Refusal::Forbidden`] (whichever layer refused), and
/// every 429 of the login route as a [`Refusal::LoginThrottled`], once each; the application
/// tallies them per client, action, route and minute.
pub async fn refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let response = next.call(req).await?;
    let refusal = match response.status() {
        StatusCode::FORBIDDEN => Refusal::Forbidden,
        StatusCode::TOO_MANY_REQUESTS
            if response.request().match_pattern().as_deref() == Some("/api/v1/auth/login") =>
        {
            Refusal::LoginThrottled
        }
        _ => return Ok(response),
    };
    let request = response.request();
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let actor = request
            .extensions()
            .get::<CallerId>()
            .map(|caller| caller.0);
        // The route is part of the refusal's tally key: a method label and a pattern, both
        // bounded, never the raw path or method a client chose.
        let pattern = request.match_pattern();
        let route = pattern.as_deref().unwrap_or("unmatched");
        let route = format!("{} {route}", method_label(request.method()));
        let context = context_of(request);
        state
            .events()
            .refused(refusal, &context, actor, &route)
            .await;
    }
    Ok(response)
}
