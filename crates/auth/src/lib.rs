//! Credential adapters: [`Argon2Hasher`] implements the domain's
//! [`PasswordHasher`](markets_domain::auth::PasswordHasher) port.
#![deny(missing_docs)]

mod password;

pub use password::{Argon2Hasher, HashingSettings};
