//! The port through which users are stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{NewUser, RoleChange, User, UserAccount, UserId};
use crate::audit::AuditEvent;
use crate::auth::{NewAccountToken, PasswordHash, TokenHash};
use crate::error::RepositoryError;
#[cfg(doc)]
use crate::jobs::JobKind;
use crate::permission::Role;
use crate::user::Email;

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateUserError {
    /// Another user already has this email (compared case-insensitively).
    #[error("email is already registered")]
    EmailTaken,
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Why a role could not be changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateRoleError {
    /// The change would leave no user with role `admin`; nothing was changed.
    #[error("the last administrator cannot lose the role")]
    LastAdmin,
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Stores users. Implementations must pass `markets_contract_tests`' user repository suite.
#[async_trait]
pub trait UserRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new user and queues [`NewUser::jobs`] (its verification email, unless
    /// [`NewUser::email_verified`]) in the same transaction.
    ///
    /// # Errors
    /// [`CreateUserError::EmailTaken`] if the email is already registered (whatever its case),
    /// [`CreateUserError::Repository`] if the store fails.
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError>;

    /// The user with this id, or `None`.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError>;

    /// The user with this (normalised) email, with their password hash, or `None`.
    async fn find_by_email(&self, email: &Email) -> Result<Option<UserAccount>, RepositoryError>;

    /// The users with these ids, in one round trip, in no particular order; unknown ids are
    /// skipped and duplicates collapse.
    async fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, RepositoryError>;

    /// Gives the user a new role and returns the updated user with the role it replaced, or
    /// `None` if there is no such user. `audit` is stored in the same transaction, and only if
    /// the user exists, as [`AuditEvent::with_previous_role`] of the replaced role: the trail
    /// records exactly the role changes that happened, and what each one changed.
    ///
    /// # Errors
    /// [`UpdateRoleError::LastAdmin`] if the change would leave no admin, decided inside the
    /// change's transaction under locks that serialise it with every other role change (two
    /// admins demoting each other at once: one succeeds, the other gets this);
    /// [`UpdateRoleError::Repository`] if the store fails.
    async fn update_role(
        &self,
        id: UserId,
        role: Role,
        audit: Option<&AuditEvent>,
    ) -> Result<Option<RoleChange>, UpdateRoleError>;

    /// Whether any user has `role` (so a fresh installation can say how to create an admin).
    async fn has_role(&self, role: Role) -> Result<bool, RepositoryError>;

    /// Stores a single-use token (its hash only) for its user.
    async fn store_token(&self, token: &NewAccountToken) -> Result<(), RepositoryError>;

    /// Queues a [`JobKind::SendPasswordReset`] job for the user with this email, if there is
    /// one. The work is the same either way (one statement that inserts what the lookup finds),
    /// so neither the time taken nor the answer tells whether the email is registered.
    async fn request_password_reset(&self, email: &Email) -> Result<(), RepositoryError>;

    /// Consumes the email verification token whose hash is `token` and, in the same
    /// transaction, marks the user's email verified and consumes the user's other verification
    /// tokens; returns the user as updated. `None`, changing nothing, if no unused
    /// verification token with this hash expires after `now`.
    async fn verify_email(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepositoryError>;

    /// Consumes the password reset token whose hash is `token` and, in the same transaction,
    /// sets `password`, advances the user's token epoch (revoking every access token issued
    /// before), marks the email verified (the link reached it) and consumes the user's other
    /// reset tokens; returns the user as updated. `None`, changing nothing, if no unused reset
    /// token with this hash expires after `now`.
    async fn reset_password(
        &self,
        token: &TokenHash,
        password: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepositoryError>;
}

forward_through_arc!(UserRepository {
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError>;
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError>;
    async fn find_by_email(&self, email: &Email) -> Result<Option<UserAccount>, RepositoryError>;
    async fn find_by_ids(&self, ids: &[UserId]) -> Result<Vec<User>, RepositoryError>;
    async fn update_role(&self, id: UserId, role: Role, audit: Option<&AuditEvent>) -> Result<Option<RoleChange>, UpdateRoleError>;
    async fn has_role(&self, role: Role) -> Result<bool, RepositoryError>;
    async fn store_token(&self, token: &NewAccountToken) -> Result<(), RepositoryError>;
    async fn request_password_reset(&self, email: &Email) -> Result<(), RepositoryError>;
    async fn verify_email(&self, token: &TokenHash, now: DateTime<Utc>) -> Result<Option<User>, RepositoryError>;
    async fn reset_password(&self, token: &TokenHash, password: &PasswordHash, now: DateTime<Utc>) -> Result<Option<User>, RepositoryError>;
});
