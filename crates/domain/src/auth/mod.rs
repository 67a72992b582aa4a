//! Credentials: passwords and their hashing port, access tokens and their issuing port, and the
//! service that registers, logs in and authenticates users and manages their roles.

mod one_time;
mod password;
mod revocation;
mod service;
mod token;

pub use one_time::{
    EMAIL_VERIFICATION_LIFETIME, NewAccountToken, OneTimeToken, PASSWORD_RESET_LIFETIME, TokenHash,
    TokenPurpose,
};
pub use password::{HashError, Password, PasswordHash, PasswordHasher};
pub use revocation::TokenRevocations;
pub use service::{AuthError, AuthService, Registration, Session};
pub use token::{AccessToken, TokenClaims, TokenError, TokenIssuer};
