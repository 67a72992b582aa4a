//! Roles, permissions and the table between them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::error::ValidationError;
use crate::user::UserId;

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// List, get and search markets.
    Read,
    /// Create markets and change one's own.
    Write,
    /// Delete any market and change anyone's.
    Delete,
    /// Manage users.
    Admin,
}

/// A user's role; each role grants a fixed set of [`Permission`]s (see [`Role::permissions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May read and write.
    User,
    /// May also delete.
    Moderator,
    /// May do everything.
    Admin,
}

impl Role {
    /// Every role, from least to most privileged.
    pub const ALL: [Role; 3] = [Role::User, Role::Moderator, Role::Admin];

    /// The role -> permission table, the single source of truth for authorisation.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::User => &[Read, Write],
            Role::Moderator => &[Read, Write, Delete],
            Role::Admin => &[Read, Write, Delete, Admin],
        }
    }

    /// Whether this role grants `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    /// The role's name as stored and as sent over the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| ValidationError::new("role", "must be one of user, moderator, admin"))
    }
}

/// Who is making a request, as far as authorisation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// No credentials: may only read.
    Anonymous,
    /// An authenticated user with their current role (read from the user record, not the token).
    User {
        /// The user's id.
        id: UserId,
        /// The user's role at the time of the request.
        role: Role,
    },
}

impl Actor {
    /// Whether this actor holds `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        match self {
            Actor::Anonymous => permission == Permission::Read,
            Actor::User { role, .. } => role.grants(permission),
        }
    }

    /// The user behind the request, if any.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Actor::Anonymous => None,
            Actor::User { id, .. } => Some(*id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table_matches_the_contract() {
        use Permission::*;
        let table: Vec<(Role, Vec<Permission>)> = Role::ALL
            .into_iter()
            .map(|role| (role, role.permissions().to_vec()))
            .collect();
        assert_eq!(
            table,
            vec![
                (Role::User, vec![Read, Write]),
                (Role::Moderator, vec![Read, Write, Delete]),
                (Role::Admin, vec![Read, Write, Delete, Admin]),
            ]
        );
    }

    #[test]
    fn anonymous_may_only_read() {
        assert!(Actor::Anonymous.can(Permission::Read));
        for denied in [Permission::Write, Permission::Delete, Permission::Admin] {
            assert!(!Actor::Anonymous.can(denied), "{denied:?}");
        }
    }

    #[test]
    fn users_act_with_their_role() {
        let moderator = Actor::User {
            id: UserId::new(),
            role: Role::Moderator,
        };
        assert!(moderator.can(Permission::Delete));
        assert!(!moderator.can(Permission::Admin));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("root".parse::<Role>().map_err(|e| e.field), Err("role"));
    }
}
