//! The JSON shapes of the API, as the contract names them, and their conversions from domain
//! types. Domain values appear as their schema types (`value_type`) for the OpenAPI document.

use chrono::{DateTime, Utc};
use markets_domain::ValidationError;
use markets_domain::market::{Creator, Market, MarketStatus, MarketSummary, ScoredSummary, Volume};
use markets_domain::permission::Role;
use markets_domain::user::User;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;
use utoipa::ToSchema;
use uuid::Uuid;

use super::schemas::{
    self, DescriptionSchema, DisplayNameSchema, EmailSchema, MarketNameSchema, PasswordSchema,
    RoleSchema, StatusSchema, VolumeInput,
};

/// A market's creator.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorResponse {
    /// User id.
    pub id: Uuid,
    /// Display name.
    pub display_name: String,
}

/// A market.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketResponse {
    /// Market id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `open`, `closed` or `resolved`.
    #[schema(value_type = StatusSchema)]
    pub status: MarketStatus,
    /// Volume, two decimal places.
    #[schema(value_type = schemas::Volume)]
    pub volume: Volume,
    /// Who created it.
    pub creator: CreatorResponse,
    /// Creation time, RFC 3339 UTC.
    pub created_at: DateTime<Utc>,
    /// Last change, RFC 3339 UTC.
    pub updated_at: DateTime<Utc>,
}

/// A market in a list: no description.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarketSummaryResponse {
    /// Market id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `open`, `closed` or `resolved`.
    #[schema(value_type = StatusSchema)]
    pub status: MarketStatus,
    /// Volume, two decimal places.
    #[schema(value_type = schemas::Volume)]
    pub volume: Volume,
    /// Who created it.
    pub creator: CreatorResponse,
    /// Creation time, RFC 3339 UTC.
    pub created_at: DateTime<Utc>,
}

/// A search hit: a summary and how close it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHitResponse {
    /// The market.
    #[serde(flatten)]
    pub market: MarketSummaryResponse,
    /// Closeness, 0 to 1, higher is closer.
    #[schema(minimum = 0, maximum = 1)]
    pub score: f32,
}

/// A user. Never a password hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// User id.
    pub id: Uuid,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `user`, `moderator` or `admin`.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Whether the user confirmed the address (a verification or password reset link); only
    /// verified addresses get market notifications.
    pub email_verified: bool,
}

/// An issued access token.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, pattern = "^Bearer$")]
    pub token_type: &'static str,
    /// Seconds until it expires.
    #[schema(minimum = 1)]
    pub expires_in: u64,
}

/// `POST /auth/register`. Fields are read as raw JSON and checked one by one, so a response
/// lists every invalid field, wrong types included.
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// A valid email; stored trimmed and lower-cased.
    #[schema(value_type = EmailSchema)]
    pub email: Option<Value>,
    /// 8 to 128 characters.
    #[schema(value_type = PasswordSchema)]
    pub password: Option<Value>,
    /// 1 to 80 characters after trimming.
    #[schema(value_type = DisplayNameSchema)]
    pub display_name: Option<Value>,
}

/// `POST /auth/login`.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// `POST /auth/verify-email`.
#[derive(Deserialize, ToSchema)]
pub struct VerifyEmailRequest {
    /// The token of the verification link.
    pub token: String,
}

/// `POST /auth/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    /// The account's email.
    #[schema(value_type = EmailSchema)]
    pub email: String,
}

/// `POST /auth/password-reset/confirm`.
#[derive(Deserialize, ToSchema)]
pub struct PasswordResetConfirmation {
    /// The token of the reset link.
    pub token: String,
    /// The new password: 8 to 128 characters.
    #[schema(value_type = PasswordSchema)]
    pub password: String,
}

/// The answer to a password reset request, the same whether or not the email is registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetRequested {
    /// What happens next.
    #[schema(example = "If the email is registered, a reset link is on its way.")]
    pub message: &'static str,
}

/// Stands in for a password or token in the `Debug` of the bodies that carry one, so that no
/// `{:?}` of a request or response, in a log line or a panic message, ever prints it.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &REDACTED)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("display_name", &self.display_name)
            .finish()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for VerifyEmailRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyEmailRequest")
            .field("token", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for PasswordResetConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordResetConfirmation")
            .field("token", &REDACTED)
            .field("password", &REDACTED)
            .finish()
    }
}

/// `PUT /users/{id}/role`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeRoleRequest {
    /// `user`, `moderator` or `admin`.
    #[schema(value_type = RoleSchema)]
    pub role: Role,
}

/// `POST /markets`. Fields are read as raw JSON and checked one by one, so a response lists
/// every invalid field, wrong types included.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateMarketRequest {
    /// 1 to 200 characters after trimming.
    #[schema(value_type = MarketNameSchema)]
    pub name: Option<Value>,
    /// Up to 5000 characters; may be empty.
    #[schema(value_type = DescriptionSchema)]
    pub description: Option<Value>,
    /// Defaults to `open`.
    #[schema(value_type = Option<StatusSchema>)]
    pub status: Option<Value>,
    /// Defaults to 0; at most two decimals and 13 integer digits.
    #[schema(value_type = Option<VolumeInput>)]
    pub volume: Option<Value>,
}

/// A field of a partial update: left out, explicitly `null`, or set.
#[derive(Debug, Default)]
pub enum Field<T> {
    /// Not in the body: unchanged.
    #[default]
    Absent,
    /// `null`: refused, a market's fields cannot be cleared.
    Null,
    /// A new value.
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Self::Value(value),
            None => Self::Null,
        })
    }
}

/// `PATCH /markets/{id}`: at least one field, none `null`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMarketRequest {
    /// 1 to 200 characters after trimming.
    #[serde(default)]
    #[schema(value_type = Option<MarketNameSchema>, nullable = false)]
    pub name: Field<Value>,
    /// Up to 5000 characters.
    #[serde(default)]
    #[schema(value_type = Option<DescriptionSchema>, nullable = false)]
    pub description: Field<Value>,
    /// `open`, `closed` or `resolved`.
    #[serde(default)]
    #[schema(value_type = Option<StatusSchema>, nullable = false)]
    pub status: Field<Value>,
    /// At most two decimals and 13 integer digits.
    #[serde(default)]
    #[schema(value_type = Option<VolumeInput>, nullable = false)]
    pub volume: Field<Value>,
}

/// `value` as a `T`, or why not, for `field` (e.g. "invalid type: integer `1`, expected a string").
pub fn typed<T: DeserializeOwned>(field: &'static str, value: Value) -> Result<T, ValidationError> {
    T::deserialize(value).map_err(|error| ValidationError::new(field, error.to_string()))
}

/// A required field as a `T`: missing is "is required".
pub fn required<T: DeserializeOwned>(
    field: &'static str,
    value: Option<Value>,
) -> Result<T, ValidationError> {
    value.map_or_else(
        || Err(ValidationError::new(field, "is required")),
        |value| typed(field, value),
    )
}

impl From<Creator> for CreatorResponse {
    fn from(creator: Creator) -> Self {
        Self {
            id: creator.id.as_uuid(),
            display_name: creator.display_name.into(),
        }
    }
}

impl From<Market> for MarketResponse {
    fn from(market: Market) -> Self {
        Self {
            id: market.id.as_uuid(),
            name: market.name.into(),
            description: market.description.into(),
            status: market.status,
            volume: market.volume,
            creator: market.creator.into(),
            created_at: market.created_at,
            updated_at: market.updated_at,
        }
    }
}

impl From<MarketSummary> for MarketSummaryResponse {
    fn from(market: MarketSummary) -> Self {
        Self {
            id: market.id.as_uuid(),
            name: market.name.into(),
            status: market.status,
            volume: market.volume,
            creator: market.creator.into(),
            created_at: market.created_at,
        }
    }
}

impl From<ScoredSummary> for SearchHitResponse {
    fn from(hit: ScoredSummary) -> Self {
        Self {
            market: hit.market.into(),
            score: hit.score,
        }
    }
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.into(),
            display_name: user.display_name.into(),
            role: user.role,
            created_at: user.created_at,
            email_verified: user.email_verified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_password_or_token() {
        let login: LoginRequest =
            serde_json::from_str(r#"{"email":"a@b.co","password":"hunter2-secret"}"#).unwrap();
        let register: RegisterRequest = serde_json::from_str(
            r#"{"email":"a@b.co","password":"hunter2-secret","display_name":"A"}"#,
        )
        .unwrap();
        let token = TokenResponse {
            access_token: "eyJ.secret-token.sig".to_owned(),
            token_type: "Bearer",
            expires_in: 1800,
        };
        for shown in [
            format!("{login:?}"),
            format!("{register:?}"),
            format!("{token:?}"),
        ] {
            assert!(shown.contains("<redacted>"), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
        assert!(format!("{login:?}").contains("a@b.co"));
    }
}
