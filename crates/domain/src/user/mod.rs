//! Users: who they are, how they are identified, and the port that stores them.

mod repository;
mod values;

pub use repository::{CreateUserError, UpdateRoleError, UserRepository};
pub use values::{DisplayName, Email, UserId};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::PasswordHash;
use crate::permission::Role;

/// A registered user. Holds no credentials: those travel separately as [`UserAccount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Normalised (trimmed, lower-case) email, unique across users.
    pub email: Email,
    /// The name shown next to the user's markets.
    pub display_name: DisplayName,
    /// What the user may do.
    pub role: Role,
    /// When the user registered.
    pub created_at: DateTime<Utc>,
    /// The user's token epoch: access tokens are issued carrying it, and refused once it has
    /// moved past theirs (a password reset advances it, revoking every earlier token).
    #[serde(default)]
    pub token_epoch: u64,
    /// Whether the user proved they receive mail at `email` (a verification or password reset
    /// link); only verified addresses get market notifications.
    #[serde(default)]
    pub email_verified: bool,
}

impl NewUser {
    /// The jobs a store queues in the transaction that stores this user: the verification
    /// email, unless the address is vouched for.
    pub fn jobs(&self) -> Vec<crate::jobs::NewJob> {
        use crate::jobs::{JobKind, NewJob};
        (!self.email_verified)
            .then(|| NewJob::for_user(JobKind::SendEmailVerification, self.id))
            .into_iter()
            .collect()
    }
}

/// A user together with their stored password hash, as needed to log them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    /// The user.
    pub user: User,
    /// Their password hash (PHC string).
    pub password_hash: PasswordHash,
}

/// A role change that happened: the user as updated, and the role they held until then (read
/// in the change's transaction, so it is the role this change replaced, not a guess).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// The user, with their new role.
    pub user: User,
    /// The role they had before.
    pub previous: Role,
}

/// Everything needed to store a new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The id to give the user.
    pub id: UserId,
    /// Normalised email.
    pub email: Email,
    /// Display name.
    pub display_name: DisplayName,
    /// Hash of the chosen password.
    pub password_hash: PasswordHash,
    /// Initial role.
    pub role: Role,
    /// Whether the address is already vouched for (an operator's `create-admin`). When it is
    /// not, the store queues a [`JobKind::SendEmailVerification`](crate::jobs::JobKind) job
    /// for the user in the same transaction, so a registered user always gets the email.
    pub email_verified: bool,
}
