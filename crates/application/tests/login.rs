//! The login flow over the in-memory fakes: the per-email throttle refuses before the password
//! is checked, failed logins are audited with a masked email, and a limiter that is down lets
//! logins through.
#![allow(clippy::unwrap_used)]

mod support;

use markets_application::limits::RateLimits;
use markets_application::login::{LoginError, LoginFlow};
use markets_application::security::{RequestContext, SecurityEvents};
use markets_domain::audit::{AuditAction, AuditLog};
use markets_domain::auth::{AuthError, AuthService};
use markets_domain::paging::PageSize;
use markets_domain::ratelimit::RatePolicy;
use markets_domain::testing::{
    BudgetLimiter, FakeTokens, InMemoryRevocations, InMemoryStore, PlaintextHasher,
};
use std::sync::Arc;
use std::time::Duration;
use support::user;

type Flow = LoginFlow<InMemoryStore, PlaintextHasher, FakeTokens, InMemoryRevocations>;

fn flow(store: &InMemoryStore, limiter: &BudgetLimiter, attempts: u32) -> Flow {
    let auth = AuthService::new(
        store.clone(),
        PlaintextHasher::default(),
        FakeTokens,
        InMemoryRevocations::default(),
    );
    LoginFlow::new(
        auth,
        RateLimits::new(Arc::new(limiter.clone())),
        RatePolicy::new("login", attempts, Duration::from_secs(60)),
        SecurityEvents::new(Arc::new(store.clone())),
    )
}

fn context() -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        ip: Some("203.0.113.9".into()),
    }
}

#[tokio::test]
async fn the_right_password_gets_a_token() {
    let store = InMemoryStore::new();
    let ann = user(&store, "ann@example.com").await;
    let flow = flow(&store, &BudgetLimiter::default(), 10);
    let token = flow
        .login(" Ann@Example.com ", "password", &context())
        .await
        .unwrap();
    assert!(token.token.starts_with(&ann.id.to_string()));
}

#[tokio::test]
async fn an_account_over_its_budget_is_refused_before_the_password_is_checked() {
    let store = InMemoryStore::new();
    user(&store, "ann@example.com").await;
    let limiter = BudgetLimiter::default();
    let flow = flow(&store, &limiter, 2);
    for _ in 0..2 {
        let wrong = flow.login("ann@example.com", "wrong", &context()).await;
        assert!(matches!(
            wrong,
            Err(LoginError::Auth(AuthError::InvalidCredentials { .. }))
        ));
    }
    // The budget is the normalised email's, whatever the spelling.
    let refused = flow.login("ANN@example.com", "password", &context()).await;
    let Err(LoginError::Throttled(decision)) = refused else {
        panic!("expected a throttled login, got {refused:?}");
    };
    assert!(!decision.allowed);
    assert_eq!(limiter.spent("login", "email:ann@example.com"), 3);
    let failures = store.page(None, PageSize::DEFAULT).await.unwrap().events;
    assert_eq!(
        failures.len(),
        2,
        "a throttled attempt is not a failed login"
    );
}

#[tokio::test]
async fn a_failed_login_is_audited_with_the_account_and_a_masked_email() {
    let store = InMemoryStore::new();
    let ann = user(&store, "ann@example.com").await;
    let flow = flow(&store, &BudgetLimiter::default(), 10);
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
    let flow = flow(&store, &limiter, 1);
    for _ in 0..3 {
        flow.login("ann@example.com", "password", &context())
            .await
            .unwrap();
    }
}
