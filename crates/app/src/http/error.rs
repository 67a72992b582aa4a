//! One error type for the HTTP layer and the contract's error envelope: every failure, from a
//! domain rule to a malformed path segment or an unknown route, leaves as
//! `{"success": false, "error": ..., "code": ..., "details"?: [...]}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use markets_domain::auth::{AuthError, HashError};
use markets_domain::error::BoxError;
use markets_domain::market::MarketError;
use markets_domain::{RepositoryError, ValidationError};
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::Flag;
use super::ratelimit::ceil_secs;
use super::schemas::ErrorCodeSchema;

/// The `Retry-After` of a 503 for a dependency that is down: how soon a client may usefully
/// try again, without knowing when it will be back (the pools' own waits are shorter).
pub const DEPENDENCY_RETRY_AFTER_SECS: u64 = 5;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldDetail {
    /// The field, as named in the request (`name`, `page_size`, `id`, ...).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every `code` an error can carry (the contract's table).
pub const CODES: [&str; 13] = [
    "bad_request",
    "unauthorized",
    "permission_denied",
    "not_found",
    "method_not_allowed",
    "conflict",
    "precondition_failed",
    "payload_too_large",
    "validation_failed",
    "idempotency_key_reused",
    "rate_limited",
    "service_unavailable",
    "internal",
];

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: Flag<false>,
    /// A human-readable message; generic for 5xx.
    pub error: String,
    /// A stable machine-readable code.
    #[schema(value_type = ErrorCodeSchema)]
    pub code: &'static str,
    /// For `validation_failed`: each failing field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(min_items = 1)]
    pub details: Vec<FieldDetail>,
}

/// Everything a request can fail with, each mapped to one status and code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: a business rule refuses the request.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: known path, wrong method; carries the `Allow` header value.
    #[error("Method not allowed")]
    MethodNotAllowed(String),
    /// 409: a uniqueness rule.
    #[error("{0}")]
    Conflict(String),
    /// 422 `idempotency_key_reused`: an `Idempotency-Key` used before with another request.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// 412: `If-Match` names no version the resource is at.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: body over the limit.
    #[error("Request body is too large")]
    PayloadTooLarge,
    /// 422: malformed or out-of-range input, field by field.
    #[error("Validation failed")]
    Validation(Vec<FieldDetail>),
    /// 429: over a rate limit; carries `Retry-After` in seconds.
    #[error("Too many requests, retry in {retry_after} s")]
    RateLimited {
        /// Seconds until a retry would be allowed.
        retry_after: u64,
    },
    /// 503: a required dependency is down; carries `Retry-After` in seconds. Logged at warn
    /// with its cause, and the first of an outage at error (see the request-id middleware).
    #[error("{service} is currently unavailable")]
    Unavailable {
        /// What is unavailable (`database`, `cache`, ...).
        service: &'static str,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
        /// What the adapter saw; logged, never sent.
        #[source]
        cause: BoxError,
    },
    /// 503 as well, but nothing is broken: `service` is too busy to take the request now
    /// (load shedding). The same response as [`AppError::Unavailable`]; logged at warn, never
    /// at error, so that a flood of refusals is not a flood of error lines.
    #[error("{service} is currently unavailable")]
    Saturated {
        /// What is saturated (`password hashing`).
        service: &'static str,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
    /// 500: anything unexpected; the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl AppError {
    /// 503 for a `service` that is down because of `cause`: retry in
    /// [`DEPENDENCY_RETRY_AFTER_SECS`].
    pub fn unavailable(service: &'static str, cause: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            service,
            retry_after: DEPENDENCY_RETRY_AFTER_SECS,
            cause: cause.into(),
        }
    }

    /// Whether this is a fault to log at error: a 5xx other than a 503 (load shedding, or a
    /// dependency that is down, whose outage is logged once rather than per request).
    pub fn is_fault(&self) -> bool {
        self.status_code().is_server_error()
            && !matches!(self, Self::Saturated { .. } | Self::Unavailable { .. })
    }

    /// 422 for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldDetail {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// 422 for every failed check among `checks`, or `Ok` when all passed.
    pub fn reject_invalid<'a>(
        checks: impl IntoIterator<Item = Option<&'a ValidationError>>,
    ) -> Result<(), Self> {
        let details: Vec<FieldDetail> = checks.into_iter().flatten().map(detail).collect();
        if details.is_empty() {
            Ok(())
        } else {
            Err(Self::Validation(details))
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "permission_denied",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } | Self::Saturated { .. } => "service_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Internal(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

fn detail(error: &ValidationError) -> FieldDetail {
    FieldDetail {
        field: error.field.to_owned(),
        message: error.message.clone(),
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) | Self::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Saturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized(_) => {
                response.insert_header((WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::MethodNotAllowed(allow) => {
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    response.insert_header((ALLOW, allow));
                }
            }
            Self::RateLimited { retry_after }
            | Self::Unavailable { retry_after, .. }
            | Self::Saturated { retry_after, .. } => {
                response.insert_header((RETRY_AFTER, HeaderValue::from(*retry_after)));
            }
            _ => {}
        }
        let details = match self {
            Self::Validation(details) => details.clone(),
            _ => Vec::new(),
        };
        response.json(ErrorBody {
            success: Flag,
            error: self.message(),
            code: self.code(),
            details,
        })
    }
}

impl From<ValidationError> for AppError {
    fn from(error: ValidationError) -> Self {
        Self::Validation(vec![detail(&error)])
    }
}

impl From<RepositoryError> for AppError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Unavailable { service, source } => Self::unavailable(service, source),
            RepositoryError::Unexpected(source) => Self::Internal(source),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<MarketError> for AppError {
    fn from(error: MarketError) -> Self {
        match error {
            MarketError::NotFound(_) => Self::NotFound(error.to_string()),
            MarketError::Unauthenticated => Self::Unauthorized("Authentication required".into()),
            MarketError::PermissionDenied(_) => {
                Self::Forbidden("You do not have permission to do this".into())
            }
            MarketError::Resolved(_) => Self::BadRequest(error.to_string()),
            MarketError::Contended(_) => Self::Conflict(error.to_string()),
            MarketError::PreconditionFailed(_) => Self::PreconditionFailed(error.to_string()),
            MarketError::KeyReused => Self::IdempotencyKeyReused(error.to_string()),
            MarketError::KeyInFlight => Self::Conflict(error.to_string()),
            MarketError::Invalid(error) => error.into(),
            MarketError::Repository(error) => error.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::EmailTaken | AuthError::LastAdmin => Self::Conflict(error.to_string()),
            AuthError::InvalidCredentials { .. } | AuthError::InvalidToken(_) => {
                Self::Unauthorized(error.to_string())
            }
            AuthError::Unauthenticated => Self::Unauthorized("Authentication required".into()),
            AuthError::PermissionDenied(_) => {
                Self::Forbidden("You do not have permission to do this".into())
            }
            AuthError::UserNotFound(_) => Self::NotFound(error.to_string()),
            AuthError::BadOneTimeToken => Self::BadRequest(error.to_string()),
            AuthError::Hashing(HashError::Busy { retry_after }) => Self::Saturated {
                service: "password hashing",
                retry_after: ceil_secs(retry_after).max(1),
            },
            AuthError::Hashing(error) => Self::Internal(Box::new(error)),
            AuthError::Signing(error) => Self::Internal(Box::new(error)),
            AuthError::Repository(error) => error.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use markets_domain::market::MarketId;

    async fn body(error: AppError) -> (StatusCode, serde_json::Value) {
        let response = error.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn domain_errors_map_to_the_contract_table() {
        let id = MarketId::new();
        let cases: Vec<(AppError, u16, &str)> = vec![
            (MarketError::Resolved(id).into(), 400, "bad_request"),
            (MarketError::Unauthenticated.into(), 401, "unauthorized"),
            (
                AuthError::InvalidCredentials { account: None }.into(),
                401,
                "unauthorized",
            ),
            (
                MarketError::PermissionDenied(markets_domain::permission::Permission::Delete)
                    .into(),
                403,
                "permission_denied",
            ),
            (MarketError::NotFound(id).into(), 404, "not_found"),
            (AuthError::EmailTaken.into(), 409, "conflict"),
            (AuthError::LastAdmin.into(), 409, "conflict"),
            (MarketError::KeyInFlight.into(), 409, "conflict"),
            (MarketError::KeyReused.into(), 422, "idempotency_key_reused"),
            (
                MarketError::PreconditionFailed(id).into(),
                412,
                "precondition_failed",
            ),
            (AppError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ValidationError::new("name", "bad").into(),
                422,
                "validation_failed",
            ),
            (
                RepositoryError::unavailable("database", "down").into(),
                503,
                "service_unavailable",
            ),
            (RepositoryError::unexpected("boom").into(), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let (actual, json) = body(error).await;
            assert_eq!(actual.as_u16(), status, "{json}");
            assert_eq!(json["code"], code);
            assert!(CODES.contains(&code), "{code} is documented");
            assert_eq!(json["success"], false);
        }
    }

    #[actix_web::test]
    async fn internal_errors_hide_their_cause() {
        let error = AppError::from(RepositoryError::unexpected("SELECT secret FROM users"));
        assert!(
            error.to_string().contains("SELECT"),
            "the log keeps the cause"
        );
        let (_, json) = body(error).await;
        assert_eq!(json["error"], "Internal server error");
        assert!(!json.to_string().contains("SELECT"));
    }

    #[actix_web::test]
    async fn not_found_names_the_market() {
        let id = MarketId::new();
        let (_, json) = body(MarketError::NotFound(id).into()).await;
        assert_eq!(json["error"], format!("Market with id {id} not found"));
    }

    #[actix_web::test]
    async fn validation_lists_each_field() {
        let name = ValidationError::new("name", "too long");
        let volume = ValidationError::new("volume", "negative");
        let rejected = AppError::reject_invalid([Some(&name), None, Some(&volume)]).unwrap_err();
        let (status, json) = body(rejected).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            json["details"],
            serde_json::json!([
                {"field": "name", "message": "too long"},
                {"field": "volume", "message": "negative"},
            ])
        );
        assert!(AppError::reject_invalid([None, None]).is_ok());
    }

    #[actix_web::test]
    async fn a_saturated_hasher_is_a_503_with_retry_after_never_a_500() {
        let busy = HashError::Busy {
            retry_after: std::time::Duration::from_millis(2500),
        };
        let error = AppError::from(AuthError::Hashing(busy));
        let response = error.error_response();
        assert_eq!(response.headers().get(RETRY_AFTER).unwrap(), "3");
        assert!(!error.is_fault(), "load shedding is not logged as a fault");
        let (status, json) = body(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["code"], "service_unavailable");
        assert_eq!(json["error"], "password hashing is currently unavailable");

        let broken = AppError::from(AuthError::Hashing(HashError::failed("corrupt hash")));
        assert!(broken.is_fault());
        let (status, _) = body(broken).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[actix_web::test]
    async fn a_dependency_outage_carries_retry_after_and_keeps_its_cause_for_the_log() {
        let error = AppError::from(RepositoryError::unavailable("database", "socket closed"));
        let response = error.error_response();
        assert_eq!(
            response.headers().get(RETRY_AFTER).unwrap(),
            &DEPENDENCY_RETRY_AFTER_SECS.to_string()
        );
        assert!(
            !error.is_fault(),
            "an outage is logged once, not per request"
        );
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("socket closed"));
        let (_, json) = body(error).await;
        assert_eq!(json["error"], "database is currently unavailable");
    }

    #[actix_web::test]
    async fn unauthorized_and_not_allowed_carry_their_headers() {
        let response = AppError::Unauthorized("x".into()).error_response();
        assert_eq!(response.headers().get(WWW_AUTHENTICATE).unwrap(), "Bearer");
        let response = AppError::MethodNotAllowed("GET, POST".into()).error_response();
        assert_eq!(response.headers().get(ALLOW).unwrap(), "GET, POST");
    }
}
