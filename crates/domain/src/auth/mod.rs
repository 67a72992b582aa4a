//! Credentials: passwords, their hashes, the hashing port and the service that registers and
//! authenticates users.

mod password;
mod service;

pub use password::{HashError, Password, PasswordHash, PasswordHasher};
pub use service::{AuthError, AuthService, Registration};
