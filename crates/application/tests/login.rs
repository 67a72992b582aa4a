//! The login flow over the in-memory fakes: failures, not successes, spend the account's
//! budgets, which refuse before the password is checked; an address guessing wrong locks out
//! only itself, many addresses are bounded together; failed logins are audited with a masked
//! email, and a limiter that is down lets logins through.
#![allow(clippy::unwrap_used)]

mod support;

use markets_application::limits::RateLimits;
use markets_application::login::{FailureBudgets, LoginError, LoginFlow};
use markets_application::security::{RequestContext, SecurityEvents};
use markets_domain::audit::{AuditAction, AuditLog};
use markets_domain::auth::{AccessToken, AuthError, AuthService};
use markets_domain::paging::PageSize;
use markets_domain::ratelimit::RatePolicy;
use markets_domain::testing::{
    BudgetLimiter, FakeTokens, InMemoryRevocations, InMemoryStore, PlaintextHasher,
};
use std::sync::Arc;
use std::time::Duration;
use support::user;

type Flow = LoginFlow<InMemoryStore, PlaintextHasher, FakeTokens, InMemoryRevocations>;

const OWNER: &str = "203.0.113.9";
const ATTACKER: &str = "198.51.100.7";

/// A flow whose budgets allow `per_client` failures per account and address and `per_account`
/// per account. The fake limiter never refills, so counts are exact and time plays no part.
fn flow(store: &InMemoryStore, limiter: &BudgetLimiter, per_client: u32, per_account: u32) -> Flow {
    let auth = AuthService::new(
        store.clone(),
        PlaintextHasher::default(),
        FakeTokens,
        InMemoryRevocations::default(),
    );
    let budgets = FailureBudgets {
        per_client: RatePolicy::new("client", per_client, Duration::from_secs(60)),
        per_account: RatePolicy::new("account", per_account, Duration::from_secs(3600)),
    };
    LoginFlow::new(
        auth,
        RateLimits::new(Arc::new(limiter.clone())),
        budgets,
        SecurityEvents::new(Arc::new(store.clone())),
    )
}

fn context() -> RequestContext {
    from(OWNER)
}

fn from(ip: &str) -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        ip: Some(ip.into()),
        network: None,
    }
}

fn is_wrong(outcome: &Result<AccessToken, LoginError>) -> bool {
    matches!(
        outcome,
        Err(LoginError::Auth(AuthError::InvalidCredentials { .. }))
    )
}

fn is_throttled(outcome: &Result<AccessToken, LoginError>) -> bool {
    matches!(outcome, Err(LoginError::Throttled(_, decision)) if !decision.allowed)
}

#[tokio::test]
async fn the_right_password_gets_a_token() {
    let store = InMemoryStore::new();
    let ann = user(&store, "ann@example.com").await;
    let flow = flow(&store, &BudgetLimiter::default(), 5, 10);
    let token = flow
        .login(" Ann@Example.com ", "password", &context())
        .await
        .unwrap();
    assert!(token.token.starts_with(&ann.id.to_string()));
}

#[tokio::test]
async fn failures_spend_both_budgets_and_successes_neither() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let limiter = BudgetLimiter::default();
    let flow = flow(&store, &limiter, 2, 3);
    for _ in 0..20 {
        flow.login("ann@example.com", "password", &context())
            .await
            .unwrap();
    }
    let client_key = format!("ip:{OWNER}|email:ann@example.com");
    assert_eq!(limiter.spent("client", &client_key), 0, "a success spent");
    assert_eq!(limiter.spent("account", "email:ann@example.com"), 0);
    // Every spelling of the email is the same account.
    let wrong = flow.login("ANN@example.com", "wrong", &context()).await;
    assert!(is_wrong(&wrong));
    assert_eq!(limiter.spent("client", &client_key), 1);
    assert_eq!(limiter.spent("account", "email:ann@example.com"), 1);
    // An unknown email spends its own budgets, as a known one does: no difference to observe.
    let unknown = flow.login("nobody@example.com", "wrong", &context()).await;
    assert!(is_wrong(&unknown));
    assert_eq!(limiter.spent("account", "email:nobody@example.com"), 1);
}

#[tokio::test]
async fn an_address_over_its_budget_is_refused_before_the_password_is_checked() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let limiter = BudgetLimiter::default();
    let flow = flow(&store, &limiter, 2, 10);
    for _ in 0..2 {
        assert!(is_wrong(
            &flow
                .login("ann@example.com", "wrong", &from(ATTACKER))
                .await
        ));
    }
    let refused = flow
        .login("ANN@example.com", "password", &from(ATTACKER))
        .await;
    assert!(is_throttled(&refused), "{refused:?}");
    assert_eq!(
        limiter.spent("account", "email:ann@example.com"),
        2,
        "a throttled attempt spent the account's budget"
    );
    let failures = store.page(None, PageSize::DEFAULT).await.unwrap().events;
    assert_eq!(
        failures.len(),
        2,
        "a throttled attempt is not a failed login"
    );
}

#[tokio::test]
async fn an_address_guessing_wrong_cannot_keep_the_owner_out() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let flow = flow(&store, &BudgetLimiter::default(), 5, 100);
    // The attack of issue 15: wrong passwords, well past the old per-email budget of 10.
    let mut wrong = 0;
    for _ in 0..50 {
        let attempt = flow
            .login("ann@example.com", "guess", &from(ATTACKER))
            .await;
        wrong += usize::from(is_wrong(&attempt));
        assert!(is_wrong(&attempt) || is_throttled(&attempt));
        // The owner, from elsewhere, is let in throughout.
        flow.login("ann@example.com", "password", &from(OWNER))
            .await
            .unwrap();
    }
    assert_eq!(
        wrong, 5,
        "the attacker's guesses are bounded by its own budget"
    );
}

#[tokio::test]
async fn many_addresses_together_are_bounded_by_the_account_budget() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let limiter = BudgetLimiter::default();
    let flow = flow(&store, &limiter, 2, 6);
    let mut wrong = 0;
    for n in 0..40 {
        let ip = format!("198.51.100.{n}");
        for _ in 0..2 {
            let attempt = flow.login("ann@example.com", "guess", &from(&ip)).await;
            wrong += usize::from(is_wrong(&attempt));
        }
    }
    assert_eq!(wrong, 6, "guesses beyond the account's budget were checked");
    assert_eq!(limiter.spent("account", "email:ann@example.com"), 6);
    // The trade-off: once the account's budget is spent, the owner waits for it too, since
    // letting a right password through would tell the next guesser when it is right.
    let owner = flow
        .login("ann@example.com", "password", &from(OWNER))
        .await;
    assert!(is_throttled(&owner), "{owner:?}");
    // Other accounts are untouched.
    user(&store, "bob@example.com").await;
    flow.login("bob@example.com", "password", &from(OWNER))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_login_is_audited_with_the_account_and_a_masked_email() {
    let store = InMemoryStore::new();
    let ann = user(&store, "ann@example.com").await;
    let flow = flow(&store, &BudgetLimiter::default(), 5, 10);
    flow.login("ann@example.com", "wrong", &context())
        .await
        .unwrap_err();
    flow.login("nobody@example.com", "wrong", &context())
        .await
        .unwrap_err();
    let mut events = store.page(None, PageSize::DEFAULT).await.unwrap().events;
    events.reverse();
    assert!(
        events
            .iter()
            .all(|event| event.action == AuditAction::LoginFailed)
    );
    assert_eq!(events[0].target_id, Some(ann.id.to_string()));
    assert_eq!(events[0].details["email"], "a…@example.com");
    assert_eq!(
        events[1].target_id, None,
        "an unknown email names no account"
    );
    assert_eq!(events[1].details["email"], "n…@example.com");
    assert_eq!(events[1].request_id.as_deref(), Some("req-1"));
    assert_eq!(events[1].ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(events[1].actor_id, None, "the caller is anonymous");
}

#[tokio::test]
async fn a_limiter_that_is_down_lets_logins_through() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let limiter = BudgetLimiter::default();
    limiter.set_down(true);
    let flow = flow(&store, &limiter, 1, 2);
    for _ in 0..3 {
        assert!(is_wrong(
            &flow.login("ann@example.com", "wrong", &context()).await
        ));
        flow.login("ann@example.com", "password", &context())
            .await
            .unwrap();
    }
}

/// An IPv6 host holds a whole /64: rotating through it must not give each address a fresh
/// budget. The front end names the network; the budget is keyed on it.
#[tokio::test]
async fn addresses_of_one_network_share_one_budget() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let limiter = BudgetLimiter::default();
    let flow = flow(&store, &limiter, 2, 10);
    let in_network = |host: u16| RequestContext {
        request_id: "req-6".into(),
        ip: Some(format!("2001:db8:0:1::{host:x}")),
        network: Some("2001:db8:0:1::/64".into()),
    };
    for host in 1..=2 {
        let wrong = flow
            .login("ann@example.com", "wrong", &in_network(host))
            .await;
        assert!(is_wrong(&wrong));
    }
    let rotated = flow.login("ann@example.com", "wrong", &in_network(3)).await;
    assert!(is_throttled(&rotated), "{rotated:?}");
}
