//! Registration, login, token authentication and role management.

use crate::audit::AuditEvent;
use crate::auth::{
    AccessToken, HashError, Password, PasswordHasher, TokenClaims, TokenError, TokenHash,
    TokenIssuer, TokenRevocations,
};
use crate::error::RepositoryError;
use crate::permission::{Actor, Permission, Role};
use crate::user::{
    CreateUserError, DisplayName, Email, NewUser, RoleChange, UpdateRoleError, User, UserId,
    UserRepository,
};
use chrono::{DateTime, Utc};

/// Why an auth use case failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The email is already registered.
    #[error("Email is already registered")]
    EmailTaken,
    /// Unknown email or wrong password: deliberately indistinguishable to the caller (same
    /// message, and the same work, see [`AuthService::authenticate`]). `account` names the user
    /// whose password was wrong, `None` for an unknown email, for the security log only: it must
    /// never shape the response.
    #[error("Invalid email or password")]
    InvalidCredentials {
        /// The existing account the password did not match, if any.
        account: Option<UserId>,
    },
    /// The presented token was refused, or its user no longer exists.
    #[error("Invalid or expired token")]
    InvalidToken(#[source] TokenError),
    /// A single-use token (password reset, email verification) that is unknown, used or
    /// expired.
    #[error("Invalid, used or expired token")]
    BadOneTimeToken,
    /// The use case needs an authenticated user.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller lacks the permission.
    #[error("missing permission: {0:?}")]
    PermissionDenied(Permission),
    /// No user has this id.
    #[error("User with id {0} not found")]
    UserNotFound(UserId),
    /// The role change would leave no administrator.
    #[error("The last administrator cannot lose the admin role")]
    LastAdmin,
    /// The password hasher failed, or was too busy to take the work ([`HashError::Busy`]).
    #[error(transparent)]
    Hashing(#[from] HashError),
    /// Signing a token failed.
    #[error("token could not be issued")]
    Signing(#[source] TokenError),
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<UpdateRoleError> for AuthError {
    fn from(error: UpdateRoleError) -> Self {
        match error {
            UpdateRoleError::LastAdmin => Self::LastAdmin,
            UpdateRoleError::Repository(error) => Self::Repository(error),
        }
    }
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
#[non_exhaustive]
pub struct Registration {
    /// Normalised email.
    pub email: Email,
    /// The chosen password.
    pub password: Password,
    /// The name to show.
    pub display_name: DisplayName,
}

impl Registration {
    /// A registration of `email` with `password`, shown as `display_name`.
    pub fn new(email: Email, password: Password, display_name: DisplayName) -> Self {
        Self {
            email,
            password,
            display_name,
        }
    }
}

/// An authenticated request's user, as currently stored, and the token it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user, with their current role.
    pub user: User,
    /// The verified token's claims.
    pub claims: TokenClaims,
}

impl Session {
    /// The actor for authorisation: the user's current role, not the token's.
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.user.id,
            role: self.user.role,
        }
    }
}

/// Registers, logs in and authenticates users over a [`UserRepository`], a [`PasswordHasher`],
/// a [`TokenIssuer`] and [`TokenRevocations`].
#[derive(Debug, Clone)]
pub struct AuthService<U, H, T, R> {
    users: U,
    hasher: H,
    tokens: T,
    revocations: R,
}

impl<U: UserRepository, H: PasswordHasher, T: TokenIssuer, R: TokenRevocations>
    AuthService<U, H, T, R>
{
    /// Builds the service on its ports.
    pub fn new(users: U, hasher: H, tokens: T, revocations: R) -> Self {
        Self {
            users,
            hasher,
            tokens,
            revocations,
        }
    }

    /// Revokes the session's token until it would have expired; other tokens of the same user
    /// keep working.
    pub async fn logout(&self, session: &Session) -> Result<(), AuthError> {
        let claims = &session.claims;
        Ok(self
            .revocations
            .revoke(&claims.token_id, claims.expires_at)
            .await?)
    }

    /// Registers a user with `role` (self-registration passes [`Role::User`]). Unless
    /// `email_verified` (an operator vouching for the address), the store queues the email that
    /// verifies it with the user.
    pub async fn register(
        &self,
        registration: Registration,
        role: Role,
        email_verified: bool,
    ) -> Result<User, AuthError> {
        let password_hash = self.hasher.hash(&registration.password).await?;
        let user = NewUser {
            id: UserId::new(),
            email: registration.email,
            display_name: registration.display_name,
            password_hash,
            role,
            email_verified,
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
            account => Err(AuthError::InvalidCredentials {
                account: account.map(|account| account.user.id),
            }),
        }
    }

    /// Checks the credentials and issues an access token.
    pub async fn login(&self, email: &str, password: &str) -> Result<AccessToken, AuthError> {
        let user = self.authenticate(email, password).await?;
        self.tokens.issue(&user).map_err(AuthError::Signing)
    }

    /// The session a bearer token opens: the token must verify and its user must still exist;
    /// the user is read afresh so that role changes apply on the next request.
    pub async fn session(&self, token: &str) -> Result<Session, AuthError> {
        let claims = self.tokens.verify(token).map_err(AuthError::InvalidToken)?;
        if self.revocations.is_revoked(&claims.token_id).await? {
            return Err(AuthError::InvalidToken(TokenError::Revoked));
        }
        let user = self
            .users
            .find_by_id(claims.user_id)
            .await?
            .ok_or(AuthError::InvalidToken(TokenError::UnknownUser))?;
        if claims.epoch < user.token_epoch {
            return Err(AuthError::InvalidToken(TokenError::Superseded));
        }
        Ok(Session { user, claims })
    }

    /// Queues a password reset email to `email` if it is registered; the same work, and the
    /// same answer, if it is not.
    pub async fn request_password_reset(&self, email: &Email) -> Result<(), AuthError> {
        Ok(self.users.request_password_reset(email).await?)
    }

    /// Marks the email of the user of verification `token` verified, consuming the token.
    ///
    /// # Errors
    /// [`AuthError::BadOneTimeToken`] for an unknown, used or expired token.
    pub async fn verify_email(&self, token: &str, now: DateTime<Utc>) -> Result<User, AuthError> {
        self.users
            .verify_email(&TokenHash::of(token), now)
            .await?
            .ok_or(AuthError::BadOneTimeToken)
    }

    /// Sets `password` for the user of reset `token` and revokes every access token issued to
    /// them before, consuming the token (and the user's other reset tokens) in the same
    /// transaction.
    ///
    /// # Errors
    /// [`AuthError::BadOneTimeToken`] for an unknown, used or expired token.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: &Password,
        now: DateTime<Utc>,
    ) -> Result<User, AuthError> {
        let hash = self.hasher.hash(password).await?;
        self.users
            .reset_password(&TokenHash::of(token), &hash, now)
            .await?
            .ok_or(AuthError::BadOneTimeToken)
    }

    /// Whether any administrator exists (a fresh installation has none until one is created).
    pub async fn has_admin(&self) -> Result<bool, AuthError> {
        Ok(self.users.has_role(Role::Admin).await?)
    }

    /// Gives a user a new role, recording `audit` (with the replaced role) in the same
    /// transaction; needs [`Permission::Admin`].
    pub async fn change_role(
        &self,
        actor: &Actor,
        id: UserId,
        role: Role,
        audit: &AuditEvent,
    ) -> Result<RoleChange, AuthError> {
        if actor.user_id().is_none() {
            return Err(AuthError::Unauthenticated);
        }
        if !actor.can(Permission::Admin) {
            return Err(AuthError::PermissionDenied(Permission::Admin));
        }
        self.set_role(id, role, audit).await
    }

    /// Gives a user a new role without an actor's permission check, for operators at the
    /// command line (`markets create-admin` promoting an existing account); records `audit`
    /// like [`Self::change_role`].
    pub async fn set_role(
        &self,
        id: UserId,
        role: Role,
        audit: &AuditEvent,
    ) -> Result<RoleChange, AuthError> {
        self.users
            .update_role(id, role, Some(audit))
            .await?
            .ok_or(AuthError::UserNotFound(id))
    }

    /// The user with this email, if any (for operators, not for requests: it tells which
    /// emails are registered).
    pub async fn find_by_email(&self, email: &Email) -> Result<Option<User>, AuthError> {
        Ok(self
            .users
            .find_by_email(email)
            .await?
            .map(|account| account.user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{NewAccountToken, OneTimeToken, TokenPurpose};
    use crate::jobs::{JobKind, NewJob};
    use crate::testing::{FakeTokens, InMemoryRevocations, InMemoryStore, PlaintextHasher};
    use futures_executor::block_on;

    type Service = AuthService<InMemoryStore, PlaintextHasher, FakeTokens, InMemoryRevocations>;

    fn service() -> Service {
        service_over(InMemoryStore::new())
    }

    /// The service over `store`, which the test keeps to look at what was stored.
    fn service_over(store: InMemoryStore) -> Service {
        let revocations = InMemoryRevocations::default();
        AuthService::new(store, PlaintextHasher::default(), FakeTokens, revocations)
    }

    #[test]
    fn a_logged_out_token_opens_no_session_but_others_do() {
        let auth = service();
        block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        let first = block_on(auth.login("ann@example.com", "long enough")).unwrap();
        let second = block_on(auth.login("ann@example.com", "long enough")).unwrap();
        let session = block_on(auth.session(&first.token)).unwrap();
        block_on(auth.logout(&session)).unwrap();
        let refused = block_on(auth.session(&first.token));
        assert!(matches!(
            refused,
            Err(AuthError::InvalidToken(TokenError::Revoked))
        ));
        assert!(block_on(auth.session(&second.token)).is_ok());
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
        let user =
            block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        let found = block_on(auth.authenticate(" ANN@example.com", "long enough")).unwrap();
        assert_eq!(found, user);
    }

    #[test]
    fn duplicate_emails_are_refused() {
        let auth = service();
        block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        let again = block_on(auth.register(registration("Ann@Example.com"), Role::Admin, false));
        assert!(matches!(again, Err(AuthError::EmailTaken)));
    }

    #[test]
    fn unknown_emails_and_wrong_passwords_fail_alike() {
        let auth = service();
        let ann =
            block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        for (email, password, account) in [
            ("ann@example.com", "wrong password", Some(ann.id)),
            ("bob@example.com", "long enough", None),
            ("not an email", "long enough", None),
            ("bob@example.com", "", None),
        ] {
            let refused = block_on(auth.authenticate(email, password)).unwrap_err();
            assert_eq!(refused.to_string(), "Invalid email or password", "{email}");
            assert!(
                matches!(refused, AuthError::InvalidCredentials { account: found } if found == account),
                "{email}: {refused:?}"
            );
        }
    }

    #[test]
    fn sessions_carry_the_current_role_not_the_tokens() {
        let auth = service();
        let user =
            block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        let token = block_on(auth.login("ann@example.com", "long enough")).unwrap();
        let admin = Actor::User {
            id: UserId::new(),
            role: Role::Admin,
        };
        block_on(auth.change_role(&admin, user.id, Role::Moderator, &promotion())).unwrap();
        let session = block_on(auth.session(&token.token)).unwrap();
        assert_eq!(session.claims.role, Role::User);
        assert_eq!(
            session.actor(),
            Actor::User {
                id: user.id,
                role: Role::Moderator
            }
        );
    }

    /// Stores a `purpose` token for `user`, as the job that emails it does.
    fn issue(
        store: &InMemoryStore,
        purpose: TokenPurpose,
        user: UserId,
        random: [u8; 32],
        now: DateTime<Utc>,
    ) -> OneTimeToken {
        let (token, stored) = NewAccountToken::issue(purpose, user, random, now);
        block_on(store.store_token(&stored)).unwrap();
        token
    }

    #[test]
    fn a_reset_revokes_earlier_tokens_and_its_token_is_single_use() {
        let store = InMemoryStore::new();
        let auth = service_over(store.clone());
        let ann =
            block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        let before = block_on(auth.login("ann@example.com", "long enough")).unwrap();
        let now = Utc::now();
        let first = issue(&store, TokenPurpose::PasswordReset, ann.id, [1; 32], now);
        let second = issue(&store, TokenPurpose::PasswordReset, ann.id, [2; 32], now);
        let new = Password::parse("a new password").unwrap();
        let wrong = block_on(auth.confirm_password_reset("nope", &new, now));
        assert!(
            matches!(wrong, Err(AuthError::BadOneTimeToken)),
            "{wrong:?}"
        );
        block_on(auth.confirm_password_reset(second.as_str(), &new, now)).unwrap();
        let refused = block_on(auth.session(&before.token));
        assert!(
            matches!(
                refused,
                Err(AuthError::InvalidToken(TokenError::Superseded))
            ),
            "{refused:?}"
        );
        // Issued in the same instant as the reset, but after it: accepted.
        let after = block_on(auth.login("ann@example.com", "a new password")).unwrap();
        assert!(block_on(auth.session(&after.token)).is_ok());
        for used in [&second, &first] {
            let again = block_on(auth.confirm_password_reset(used.as_str(), &new, now));
            assert!(
                matches!(again, Err(AuthError::BadOneTimeToken)),
                "{again:?}"
            );
        }
        let late = issue(&store, TokenPurpose::PasswordReset, ann.id, [3; 32], now);
        let expired = now + TokenPurpose::PasswordReset.lifetime();
        let refused = block_on(auth.confirm_password_reset(late.as_str(), &new, expired));
        assert!(
            matches!(refused, Err(AuthError::BadOneTimeToken)),
            "{refused:?}"
        );
    }

    #[test]
    fn registration_queues_the_verification_that_its_token_completes_once() {
        let store = InMemoryStore::new();
        let auth = service_over(store.clone());
        let ann =
            block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        assert!(!ann.email_verified);
        let queued = NewJob::for_user(JobKind::SendEmailVerification, ann.id);
        assert_eq!(store.jobs(), [queued]);
        let now = Utc::now();
        let purpose = TokenPurpose::EmailVerification;
        let token = issue(&store, purpose, ann.id, [4; 32], now);
        let reset = issue(&store, TokenPurpose::PasswordReset, ann.id, [5; 32], now);
        let wrong_purpose = block_on(auth.verify_email(reset.as_str(), now));
        assert!(matches!(wrong_purpose, Err(AuthError::BadOneTimeToken)));
        let expired = now + purpose.lifetime();
        let late = block_on(auth.verify_email(token.as_str(), expired));
        assert!(matches!(late, Err(AuthError::BadOneTimeToken)));
        let verified = block_on(auth.verify_email(token.as_str(), now)).unwrap();
        assert!(verified.email_verified);
        let again = block_on(auth.verify_email(token.as_str(), now));
        assert!(matches!(again, Err(AuthError::BadOneTimeToken)));
        let vouched = block_on(auth.register(registration("bob@example.com"), Role::Admin, true));
        assert!(vouched.unwrap().email_verified);
        assert_eq!(
            store.jobs().len(),
            1,
            "a vouched address gets no verification email"
        );
    }

    #[test]
    fn a_reset_is_queued_for_known_emails_only() {
        let store = InMemoryStore::new();
        let auth = service_over(store.clone());
        let ann =
            block_on(auth.register(registration("ann@example.com"), Role::User, true)).unwrap();
        block_on(auth.request_password_reset(&Email::parse("bob@example.com").unwrap())).unwrap();
        assert_eq!(store.jobs(), []);
        block_on(auth.request_password_reset(&ann.email)).unwrap();
        assert_eq!(
            store.jobs(),
            [NewJob::for_user(JobKind::SendPasswordReset, ann.id)]
        );
    }

    #[test]
    fn the_last_admin_keeps_the_role() {
        let auth = service();
        let ann =
            block_on(auth.register(registration("ann@example.com"), Role::Admin, false)).unwrap();
        let actor = Actor::User {
            id: ann.id,
            role: Role::Admin,
        };
        let refused = block_on(auth.change_role(&actor, ann.id, Role::User, &promotion()));
        assert!(matches!(refused, Err(AuthError::LastAdmin)), "{refused:?}");
        let bob =
            block_on(auth.register(registration("bob@example.com"), Role::Admin, false)).unwrap();
        block_on(auth.change_role(&actor, ann.id, Role::User, &promotion())).unwrap();
        let refused = block_on(auth.change_role(&actor, bob.id, Role::Moderator, &promotion()));
        assert!(matches!(refused, Err(AuthError::LastAdmin)), "{refused:?}");
    }

    #[test]
    fn refused_tokens_open_no_session() {
        let auth = service();
        let refused = block_on(auth.session("not a token"));
        assert!(matches!(refused, Err(AuthError::InvalidToken(_))));
    }

    fn promotion() -> AuditEvent {
        AuditEvent::new(crate::audit::AuditAction::RoleChanged)
    }

    #[test]
    fn only_admins_change_roles() {
        let auth = service();
        let user =
            block_on(auth.register(registration("ann@example.com"), Role::User, false)).unwrap();
        let moderator = Actor::User {
            id: UserId::new(),
            role: Role::Moderator,
        };
        let denied = block_on(auth.change_role(&moderator, user.id, Role::Admin, &promotion()));
        assert!(matches!(
            denied,
            Err(AuthError::PermissionDenied(Permission::Admin))
        ));
        let anonymous =
            block_on(auth.change_role(&Actor::Anonymous, user.id, Role::Admin, &promotion()));
        assert!(matches!(anonymous, Err(AuthError::Unauthenticated)));
        let admin = Actor::User {
            id: UserId::new(),
            role: Role::Admin,
        };
        let missing = block_on(auth.change_role(&admin, UserId::new(), Role::Admin, &promotion()));
        assert!(matches!(missing, Err(AuthError::UserNotFound(_))));
    }
}
