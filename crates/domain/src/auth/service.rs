//! Registration and authentication.

use crate::auth::{HashError, Password, PasswordHasher};
use crate::error::RepositoryError;
use crate::permission::Role;
use crate::user::{CreateUserError, DisplayName, Email, NewUser, User, UserId, UserRepository};

/// Why registering or authenticating failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The email is already registered.
    #[error("email is already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The password hasher failed.
    #[error(transparent)]
    Hashing(#[from] HashError),
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<CreateUserError> for AuthError {
    fn from(error: CreateUserError) -> Self {
        match error {
            CreateUserError::EmailTaken => Self::EmailTaken,
            CreateUserError::Repository(error) => Self::Repository(error),
        }
    }
}

/// A validated registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Normalised email.
    pub email: Email,
    /// The chosen password.
    pub password: Password,
    /// The name to show.
    pub display_name: DisplayName,
}

/// Registers and authenticates users over a [`UserRepository`] and a [`PasswordHasher`].
#[derive(Debug, Clone)]
pub struct AuthService<U, H> {
    users: U,
    hasher: H,
}

impl<U: UserRepository, H: PasswordHasher> AuthService<U, H> {
    /// Builds the service on its ports.
    pub fn new(users: U, hasher: H) -> Self {
        Self { users, hasher }
    }

    /// Registers a user with `role` (self-registration passes [`Role::User`]).
    pub async fn register(
        &self,
        registration: Registration,
        role: Role,
    ) -> Result<User, AuthError> {
        let password_hash = self.hasher.hash(&registration.password).await?;
        let user = NewUser {
            id: UserId::new(),
            email: registration.email,
            display_name: registration.display_name,
            password_hash,
            role,
        };
        Ok(self.users.create(user).await?)
    }

    /// The user whose email and password these are. Unknown emails still cost one verification
    /// against a dummy hash, so response time does not reveal which emails are registered.
    pub async fn authenticate(&self, email: &str, password: &str) -> Result<User, AuthError> {
        let account = match Email::parse(email) {
            Ok(email) => self.users.find_by_email(&email).await?,
            Err(_) => None,
        };
        let hash = account.as_ref().map_or_else(
            || self.hasher.dummy_hash(),
            |account| &account.password_hash,
        );
        let matches = self.hasher.verify(password, hash).await?;
        match account {
            Some(account) if matches => Ok(account.user),
            _ => Err(AuthError::InvalidCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{InMemoryStore, PlaintextHasher};
    use futures_executor::block_on;

    fn service() -> AuthService<InMemoryStore, PlaintextHasher> {
        AuthService::new(InMemoryStore::new(), PlaintextHasher::default())
    }

    fn registration(email: &str) -> Registration {
        Registration {
            email: Email::parse(email).unwrap(),
            password: Password::parse("long enough").unwrap(),
            display_name: DisplayName::parse("Ann").unwrap(),
        }
    }

    #[test]
    fn registered_users_can_log_in_with_any_email_case() {
        let auth = service();
        let user = block_on(auth.register(registration("ann@example.com"), Role::User)).unwrap();
        let found = block_on(auth.authenticate(" ANN@example.com", "long enough")).unwrap();
        assert_eq!(found, user);
    }

    #[test]
    fn duplicate_emails_are_refused() {
        let auth = service();
        block_on(auth.register(registration("ann@example.com"), Role::User)).unwrap();
        let again = block_on(auth.register(registration("Ann@Example.com"), Role::Admin));
        assert!(matches!(again, Err(AuthError::EmailTaken)));
    }

    #[test]
    fn unknown_emails_and_wrong_passwords_fail_alike() {
        let auth = service();
        block_on(auth.register(registration("ann@example.com"), Role::User)).unwrap();
        for (email, password) in [
            ("ann@example.com", "wrong password"),
            ("bob@example.com", "long enough"),
            ("not an email", "long enough"),
            ("bob@example.com", ""),
        ] {
            let refused = block_on(auth.authenticate(email, password));
            assert!(
                matches!(refused, Err(AuthError::InvalidCredentials)),
                "{email}"
            );
        }
    }
}
