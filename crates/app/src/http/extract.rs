//! Extractors: who is calling (and the one reusable permission guard), and JSON bodies that
//! fail with field-level details.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{AUTHORIZATION, CONTENT_TYPE};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use markets_domain::auth::{AuthError, Session, TokenError};
use markets_domain::permission::{Actor, Permission};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

use super::error::AppError;
use super::json;
use markets_application::security::token_rejected;

use super::security::{CallerId, context_of};
use crate::wiring::AppState;

/// The caller of any route: anonymous without an `Authorization` header, else the session its
/// bearer token opens. A header that is present but invalid is refused (401) even on public
/// routes, so a client with a broken token finds out at once.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated session, if any.
    pub session: Option<Session>,
}

impl Caller {
    /// The actor for authorisation.
    pub fn actor(&self) -> Actor {
        self.session
            .as_ref()
            .map_or(Actor::Anonymous, Session::actor)
    }
}

fn unauthorized(message: &str) -> AppError {
    AppError::Unauthorized(message.to_owned())
}

/// The token of `Authorization: Bearer <token>`; `Ok(None)` without the header.
fn bearer_token(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = header
        .to_str()
        .map_err(|_| unauthorized("Malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthorized("Malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthorized("Authorization must be a Bearer token"));
    }
    Ok(Some(token.trim().to_owned()))
}

impl FromRequest for Caller {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    /// Verified once per request: a middleware that needed the caller first (the per-user rate
    /// limit) leaves it in the request's extensions.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(caller) = req.extensions().get::<Caller>().cloned() {
            return Box::pin(async move { Ok(caller) });
        }
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let req = req.clone();
        Box::pin(async move {
            let token =
                token.inspect_err(|_| token_rejected(&context_of(&req), &TokenError::Malformed));
            let Some(token) = token? else {
                return Ok(Caller { session: None });
            };
            let state = state.ok_or_else(|| {
                AppError::Internal("the application state is not registered".into())
            })?;
            let session = state.auth().session(&token).await.inspect_err(|error| {
                if let AuthError::InvalidToken(reason) = error {
                    token_rejected(&context_of(&req), reason);
                }
            })?;
            req.extensions_mut().insert(CallerId(session.user.id));
            let caller = Caller {
                session: Some(session),
            };
            req.extensions_mut().insert(caller.clone());
            Ok(caller)
        })
    }
}

/// A caller that must be authenticated (401 otherwise).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Session);

impl FromRequest for Authenticated {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            caller
                .await?
                .session
                .map(Authenticated)
                .ok_or_else(|| unauthorized("Authentication required"))
        })
    }
}

/// A permission, as a type, for [`Require`].
pub trait RequiredPermission {
    /// The permission required.
    const PERMISSION: Permission;
}

macro_rules! permission_marker {
    ($($name:ident => $permission:ident),+ $(,)?) => {
        $(
            #[doc = concat!("Requires [`Permission::", stringify!($permission), "`].")]
            #[derive(Debug)]
            pub struct $name;

            impl RequiredPermission for $name {
                const PERMISSION: Permission = Permission::$permission;
            }
        )+
    };
}

permission_marker!(CanWrite => Write, CanDelete => Delete, CanAdmin => Admin);

/// The guard: an authenticated caller holding `P` (401 without a session, 403 without the
/// permission), as decided by the role table in the domain.
#[derive(Debug)]
pub struct Require<P> {
    /// The caller's session.
    pub session: Session,
    permission: PhantomData<P>,
}

impl<P> Require<P> {
    /// The actor for the service call.
    pub fn actor(&self) -> Actor {
        self.session.actor()
    }
}

/// Whether `actor` may go on: the guard's decision, apart from extraction so it can be tested.
pub fn check(actor: &Actor, permission: Permission) -> Result<(), AppError> {
    match actor {
        Actor::Anonymous => Err(unauthorized("Authentication required")),
        _ if actor.can(permission) => Ok(()),
        _ => Err(AppError::Forbidden(
            "You do not have permission to do this".into(),
        )),
    }
}

impl<P: RequiredPermission + 'static> FromRequest for Require<P> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            check(&caller.actor(), P::PERMISSION)?;
            let session = caller
                .session
                .ok_or_else(|| unauthorized("Authentication required"))?;
            Ok(Require {
                session,
                permission: PhantomData,
            })
        })
    }
}

/// A JSON body, decoded strictly (no repeated keys, bounded nesting: see `http/json.rs`) so that
/// a failure names the offending field (`details[].field`). Bodies over the configured payload
/// limit are refused with 413.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        })
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_json = is_json(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes
                .await
                .map_err(|error| match error.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => AppError::PayloadTooLarge,
                    _ => AppError::invalid("body", "could not be read"),
                })?;
            if !declared_json {
                return Err(AppError::invalid(
                    "body",
                    "Content-Type must be application/json",
                ));
            }
            json::decode(&bytes).map(JsonBody)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markets_domain::permission::Role;
    use markets_domain::user::UserId;

    fn user(role: Role) -> Actor {
        Actor::User {
            id: UserId::new(),
            role,
        }
    }

    #[test]
    fn the_guard_follows_the_role_table() {
        assert!(matches!(
            check(&Actor::Anonymous, Permission::Write),
            Err(AppError::Unauthorized(_))
        ));
        assert!(check(&user(Role::User), Permission::Write).is_ok());
        assert!(matches!(
            check(&user(Role::User), Permission::Delete),
            Err(AppError::Forbidden(_))
        ));
        assert!(check(&user(Role::Moderator), Permission::Delete).is_ok());
        assert!(matches!(
            check(&user(Role::Moderator), Permission::Admin),
            Err(AppError::Forbidden(_))
        ));
        assert!(check(&user(Role::Admin), Permission::Admin).is_ok());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let request = actix_web::test::TestRequest::default()
            .insert_header((AUTHORIZATION, "Bearer abc.def"))
            .to_http_request();
        assert_eq!(bearer_token(&request).unwrap().as_deref(), Some("abc.def"));
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(bearer_token(&none).unwrap(), None);
        for bad in ["Basic dXNlcg==", "Bearer", "Bearer   ", "token"] {
            let request = actix_web::test::TestRequest::default()
                .insert_header((AUTHORIZATION, bad))
                .to_http_request();
            assert!(bearer_token(&request).is_err(), "{bad}");
        }
    }
}
