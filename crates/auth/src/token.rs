//! HS256 JWT access tokens: `sub`, `role`, `iat`, `exp`, `jti` and `gen` (the user's token
//! epoch), verified with the algorithm pinned and no leeway.

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use markets_domain::auth::{AccessToken, TokenClaims, TokenError, TokenIssuer};
use markets_domain::user::User;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The claims as they travel in the token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// The user's token epoch at issue; tokens from before the claim existed count as epoch 0,
    /// which every user had until their first password reset.
    #[serde(default)]
    r#gen: u64,
}

/// Issues and verifies HS256 JWTs with one shared secret.
#[derive(Clone)]
pub struct JwtIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: Duration,
}

impl fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("algorithm", &Algorithm::HS256)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl JwtIssuer {
    /// Tokens signed with `secret`, valid for `lifetime`.
    pub fn new(secret: &SecretString, lifetime: Duration) -> Self {
        let secret = secret.expose_secret().as_bytes();
        // Only HS256 verifies; `exp` is required and checked to the second; no `aud`/`iss`.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat", "jti"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            lifetime,
        }
    }

    /// A random 256-bit secret, for development when none is configured: tokens then die
    /// with the process and are not shared between instances.
    pub fn random_secret() -> SecretString {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SecretString::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

fn timestamp(seconds: i64) -> Result<DateTime<Utc>, TokenError> {
    DateTime::from_timestamp(seconds, 0).ok_or(TokenError::Malformed)
}

impl TokenIssuer for JwtIssuer {
    fn issue(&self, user: &User) -> Result<AccessToken, TokenError> {
        let now = Utc::now().timestamp();
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user.id.to_string(),
            role: user.role.to_string(),
            iat: now,
            exp: now.saturating_add(lifetime),
            jti: uuid::Uuid::new_v4().to_string(),
            r#gen: user.token_epoch,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| TokenError::Signing(Box::new(error)))?;
        Ok(AccessToken::new(token, self.lifetime.as_secs()))
    }

    fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::WrongAlgorithm
                }
                _ => TokenError::Malformed,
            })?;
        let claims = data.claims;
        Ok(TokenClaims::new(
            claims.sub.parse().map_err(|_| TokenError::Malformed)?,
            claims.role.parse().map_err(|_| TokenError::Malformed)?,
            claims.jti,
            claims.r#gen,
            timestamp(claims.iat)?,
            timestamp(claims.exp)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markets_domain::permission::Role;
    use markets_domain::user::{DisplayName, Email, UserId};

    fn issuer(secret: &str) -> JwtIssuer {
        JwtIssuer::new(&SecretString::from(secret), Duration::from_secs(1800))
    }

    fn user() -> User {
        User {
            id: UserId::new(),
            email: Email::parse("ann@example.com").unwrap(),
            display_name: DisplayName::parse("Ann").unwrap(),
            role: Role::Moderator,
            created_at: Utc::now(),
            token_epoch: 7,
            email_verified: true,
        }
    }

    fn encode(header: &str, claims: &serde_json::Value, signature: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{signature}",
            b64.encode(header),
            b64.encode(claims.to_string())
        )
    }

    #[test]
    fn issued_tokens_verify_with_all_claims() {
        let issuer = issuer("a secret that is long enough to sign");
        let user = user();
        let token = issuer.issue(&user).unwrap();
        assert_eq!(token.expires_in, 1800);
        let claims = issuer.verify(&token.token).unwrap();
        assert_eq!(claims.user_id, user.id);
        assert_eq!(claims.role, Role::Moderator);
        assert_eq!(claims.epoch, 7, "the user's token epoch travels as `gen`");
        assert_eq!((claims.expires_at - claims.issued_at).num_seconds(), 1800);
        let again = issuer.issue(&user).unwrap();
        let other = issuer.verify(&again.token).unwrap();
        assert_ne!(claims.token_id, other.token_id, "jti must be unique");
    }

    #[test]
    fn tokens_signed_with_another_key_are_refused() {
        let token = issuer("the key of somebody else entirely")
            .issue(&user())
            .unwrap();
        let refused = issuer("a secret that is long enough to sign").verify(&token.token);
        assert!(
            matches!(refused, Err(TokenError::BadSignature)),
            "{refused:?}"
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: UserId::new().to_string(),
            role: "user".into(),
            iat: now - 1801,
            exp: now - 1,
            jti: "j".into(),
            r#gen: 0,
        };
        let key = EncodingKey::from_secret(b"k");
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        // One second past `exp` is enough: there is no leeway.
        let refused = issuer("k").verify(&token);
        assert!(matches!(refused, Err(TokenError::Expired)), "{refused:?}");
    }

    #[test]
    fn unsigned_and_foreign_algorithm_tokens_are_refused() {
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": UserId::new().to_string(), "role": "admin", "iat": now, "exp": now + 600,
            "jti": "x",
        });
        let issuer = issuer("k");
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
        ] {
            let forged = encode(header, &claims, "");
            let refused = issuer.verify(&forged);
            assert!(
                matches!(
                    refused,
                    Err(TokenError::WrongAlgorithm | TokenError::Malformed)
                ),
                "{header}: {refused:?}"
            );
        }
        assert!(matches!(
            issuer.verify("garbage"),
            Err(TokenError::Malformed)
        ));
    }

    /// Tokens issued before the `gen` claim existed stay valid for users who never reset
    /// (epoch 0) and are refused for those who did.
    #[test]
    fn tokens_without_an_epoch_claim_are_epoch_zero() {
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": UserId::new().to_string(), "role": "user", "iat": now, "exp": now + 600,
            "jti": "old",
        });
        let key = EncodingKey::from_secret(b"k");
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
        assert_eq!(issuer("k").verify(&token).unwrap().epoch, 0);
    }

    #[test]
    fn random_secrets_differ_and_are_long() {
        let (a, b) = (JwtIssuer::random_secret(), JwtIssuer::random_secret());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 64);
    }
}
