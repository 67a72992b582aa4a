//! The login flow: the per-email throttle, authentication and the failed-login audit, in one
//! place, so that every front end applies all three.
//!
//! The per-email budget sits beside the per-client one that a front end applies to its login
//! route: guessing one account's password from many addresses is limited too.

use markets_domain::audit::AuditAction;
use markets_domain::auth::{
    AccessToken, AuthError, AuthService, PasswordHasher, TokenIssuer, TokenRevocations,
};
use markets_domain::ratelimit::{RateDecision, RatePolicy};
use markets_domain::user::{Email, UserRepository};

use crate::limits::RateLimits;
use crate::security::{RequestContext, SecurityEvents, mask_email};

/// Why a login did not issue a token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The email's budget of attempts is spent; the decision carries the headers to send.
    #[error("too many login attempts for this account")]
    Throttled(RateDecision),
    /// Authentication failed (wrong credentials, the store or the hasher failed).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Logs users in over an [`AuthService`], throttled per email, auditing failures.
#[derive(Debug, Clone)]
pub struct LoginFlow<U, H, T, R> {
    auth: AuthService<U, H, T, R>,
    limits: RateLimits,
    per_email: RatePolicy,
    events: SecurityEvents,
}

impl<U: UserRepository, H: PasswordHasher, T: TokenIssuer, R: TokenRevocations>
    LoginFlow<U, H, T, R>
{
    /// The flow over `auth`, spending `per_email` budgets through `limits`, recording failures
    /// with `events`.
    pub fn new(
        auth: AuthService<U, H, T, R>,
        limits: RateLimits,
        per_email: RatePolicy,
        events: SecurityEvents,
    ) -> Self {
        Self {
            auth,
            limits,
            per_email,
            events,
        }
    }

    /// Checks the email's budget, then the credentials, and issues a token.
    ///
    /// # Errors
    /// [`LoginError::Throttled`] when the budget is spent (the password is not checked then);
    /// otherwise what authentication reported, a wrong password recorded as
    /// `auth.login_failed` first.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        context: &RequestContext,
    ) -> Result<AccessToken, LoginError> {
        let key = format!("email:{}", budget_key(email));
        let decision = self.limits.decide(&self.per_email, &key).await;
        if let Some(refused) = decision.filter(|decision| !decision.allowed) {
            return Err(LoginError::Throttled(refused));
        }
        match self.auth.login(email, password).await {
            Err(AuthError::InvalidCredentials { account }) => {
                self.record_failure(email, account, context).await;
                Err(AuthError::InvalidCredentials { account }.into())
            }
            outcome => Ok(outcome?),
        }
    }

    /// `auth.login_failed`: the email may name no account, so only a masked form of it is kept.
    /// The caller is anonymous either way; an existing account is the target. The response is
    /// the same in both cases, and so is the work done here, so neither reveals which it was.
    async fn record_failure(
        &self,
        email: &str,
        account: Option<markets_domain::user::UserId>,
        context: &RequestContext,
    ) {
        let event = context
            .event(AuditAction::LoginFailed, None)
            .with("email", mask_email(email));
        let event = match account {
            Some(id) => event.on("user", id),
            None => event,
        };
        self.events.record(event).await;
    }
}

/// The account an attempt spends the budget of: the normalised email. Unparseable emails share
/// one key (they cannot log in anyway).
fn budget_key(email: &str) -> String {
    Email::parse(email).map_or_else(|_| "invalid".to_owned(), String::from)
}
