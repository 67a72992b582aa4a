//! `Idempotency-Key` on `POST /api/v1/markets`: the header, the fingerprint of what a request
//! asks for, and the marker of a replayed answer.

use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpRequest};
use markets_domain::ValidationError;
use markets_domain::market::{IdempotencyKey, MarketDraft};
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};

use super::error::AppError;

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header of a replayed answer, `true`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The raw `Idempotency-Key` of a request, if it sent one.
#[derive(Debug, Clone)]
pub struct KeyHeader(Option<String>);

impl KeyHeader {
    /// The key for a create of `draft`, fingerprinted by what it asks for: two requests asking
    /// for the same market (however their JSON is spelled: key order, `1` or `1.00`) are the
    /// same request.
    ///
    /// # Errors
    /// A key that is not 1 to 255 printable ASCII characters.
    pub fn for_create(&self, draft: &MarketDraft) -> Result<Option<IdempotencyKey>, AppError> {
        let Some(raw) = &self.0 else {
            return Ok(None);
        };
        let asked = serde_json::json!([
            draft.name.as_str(),
            draft.description.as_str(),
            draft.status.as_str(),
            draft.volume.cents(),
        ]);
        let digest = Sha256::digest(asked.to_string().as_bytes());
        let fingerprint: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Some(IdempotencyKey::parse(raw, fingerprint)?))
    }
}

impl FromRequest for KeyHeader {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.headers().get(IDEMPOTENCY_KEY).map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ValidationError::new("Idempotency-Key", "must be printable ASCII").into()
            })
        });
        ready(raw.transpose().map(Self))
    }
}
