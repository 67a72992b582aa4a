//! Credential adapters: [`Argon2Hasher`] implements the domain's
//! [`PasswordHasher`](markets_domain::auth::PasswordHasher) port and [`JwtIssuer`] its
//! [`TokenIssuer`](markets_domain::auth::TokenIssuer) port.
#![deny(missing_docs)]

mod password;
mod token;

pub use password::{Argon2Hasher, HashingSettings};
pub use token::JwtIssuer;
