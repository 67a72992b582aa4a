//! The login flow: the per-account throttle, authentication and the failed-login audit, in one
//! place, so that every front end applies all three.
//!
//! Only failures spend an account's budgets, and there are two (see [`FailureBudgets`]): one
//! per account and client address, so that an address guessing wrong locks out itself, not
//! the owner elsewhere; and one per account from all addresses together, so that guessing one
//! password from many addresses stays bounded. Both are peeked at (counting nothing) before
//! the password is checked and spent once it turns out wrong. They sit beside the per-client
//! budget that a front end applies to its login route, which every attempt spends.

use markets_domain::audit::AuditAction;
use markets_domain::auth::{
    AccessToken, AuthError, AuthService, PasswordHasher, TokenIssuer, TokenRevocations,
};
use markets_domain::ratelimit::{RateDecision, RatePolicy};
use markets_domain::user::{Email, UserRepository};

use crate::limits::RateLimits;
use crate::security::{RequestContext, SecurityEvents, mask_email};

/// The failed-login budgets of every account.
#[derive(Debug, Clone)]
pub struct FailureBudgets {
    /// Failures per account and client address: what one address may guess at one account.
    pub per_client: RatePolicy,
    /// Failures per account from all addresses together. Once spent, the account is refused
    /// to everyone, its owner included, until it refills: the price of bounding guesses made
    /// from many addresses. It should outlast `per_client` so that one address cannot spend it.
    pub per_account: RatePolicy,
}

/// Why a login did not issue a token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A budget of failures for this account is spent: the budget and its decision, which
    /// carry the headers to send.
    #[error("too many login attempts for this account")]
    Throttled(RatePolicy, RateDecision),
    /// Authentication failed (wrong credentials, the store or the hasher failed).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Logs users in over an [`AuthService`], throttled by failures per account, auditing them.
#[derive(Debug, Clone)]
pub struct LoginFlow<U, H, T, R> {
    auth: AuthService<U, H, T, R>,
    limits: RateLimits,
    budgets: FailureBudgets,
    events: SecurityEvents,
}

impl<U: UserRepository, H: PasswordHasher, T: TokenIssuer, R: TokenRevocations>
    LoginFlow<U, H, T, R>
{
    /// The flow over `auth`, spending `budgets` through `limits`, recording failures with
    /// `events`.
    pub fn new(
        auth: AuthService<U, H, T, R>,
        limits: RateLimits,
        budgets: FailureBudgets,
        events: SecurityEvents,
    ) -> Self {
        Self {
            auth,
            limits,
            budgets,
            events,
        }
    }

    /// Looks at the account's budgets of failures (spending nothing), checks the credentials,
    /// and issues a token; wrong credentials spend both budgets.
    ///
    /// # Errors
    /// [`LoginError::Throttled`] when either budget is spent (the password is not checked
    /// then); otherwise what authentication reported, wrong credentials recorded as
    /// `auth.login_failed` first.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        context: &RequestContext,
    ) -> Result<AccessToken, LoginError> {
        let keys = BudgetKeys::new(email, context);
        self.refuse_if_spent(&keys).await?;
        match self.auth.login(email, password).await {
            Err(AuthError::InvalidCredentials { account }) => {
                self.spend(&keys).await;
                self.record_failure(email, account, context).await;
                Err(AuthError::InvalidCredentials { account }.into())
            }
            outcome => Ok(outcome?),
        }
    }

    /// Refuses when either budget is spent, with the longer wait of the two. A limiter that
    /// cannot decide refuses nothing.
    async fn refuse_if_spent(&self, keys: &BudgetKeys) -> Result<(), LoginError> {
        let (client, account) = tokio::join!(
            self.limits.peek(&self.budgets.per_client, &keys.client),
            self.limits.peek(&self.budgets.per_account, &keys.account),
        );
        let budgets = [&self.budgets.per_client, &self.budgets.per_account];
        let refused = budgets
            .into_iter()
            .zip([client, account])
            .filter_map(|(policy, decision)| decision.map(|decision| (policy, decision)))
            .filter(|(_, decision)| !decision.allowed)
            .max_by_key(|(_, decision)| decision.retry_after);
        refused.map_or(Ok(()), |(policy, decision)| {
            Err(LoginError::Throttled(policy.clone(), decision))
        })
    }

    /// A failure spends both budgets.
    async fn spend(&self, keys: &BudgetKeys) {
        tokio::join!(
            self.limits.spend(&self.budgets.per_client, &keys.client),
            self.limits.spend(&self.budgets.per_account, &keys.account),
        );
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

/// The keys an attempt's budgets are counted under. The account is the normalised email, so
/// every spelling shares one budget; unparseable emails share one key (they cannot log in
/// anyway), and so do clients of unknown address. The address comes first in the client key:
/// it never holds the separator, an email may.
struct BudgetKeys {
    client: String,
    account: String,
}

impl BudgetKeys {
    fn new(email: &str, context: &RequestContext) -> Self {
        let email = Email::parse(email).map_or_else(|_| "invalid".to_owned(), String::from);
        let ip = context.client().unwrap_or("unknown");
        Self {
            client: format!("ip:{ip}|email:{email}"),
            account: format!("email:{email}"),
        }
    }
}
