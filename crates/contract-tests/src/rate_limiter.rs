//! The contract of [`RateLimiter`]: a burst of up to the limit passes and the next request is
//! refused with a `Retry-After`, the `RateLimit-*` figures count down, refusals spend nothing,
//! keys and policies are counted apart, and the allowance comes back with time. A peek counts
//! nothing, finds an unknown key full, and says what a check would decide after spending.
//!
//! Cases never assert how long anything took. The one that needs time to pass uses a policy
//! with a tiny period and polls, with a deadline, until a request is allowed again.

use markets_domain::ratelimit::{RateDecision, RateLimiter, RatePolicy};
use std::time::{Duration, Instant};

/// A limiter with no requests counted yet (fresh storage, or a key space of its own).
pub trait RateLimiterFixture: Send + Sync + 'static {
    /// The limiter under test.
    type Limiter: RateLimiter;

    /// The limiter.
    fn limiter(&self) -> &Self::Limiter;
}

/// Generates one `#[test]` per rate limiter contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of a [`RateLimiterFixture`]).
#[macro_export]
macro_rules! rate_limiter_contract {
    ($make:expr) => {
        $crate::__contract_cases!(rate_limiter, $make;
            a_burst_of_the_limit_passes_then_requests_are_refused,
            refused_requests_spend_nothing,
            keys_are_counted_apart,
            policies_are_counted_apart,
            the_allowance_comes_back_with_time,
            a_peek_at_an_unknown_key_finds_it_full,
            peeks_spend_nothing,
            a_peek_reflects_what_was_spent,
        );
    };
}

/// A policy named `name` of `limit` requests per `period`.
pub fn policy(name: &str, limit: u32, period: Duration) -> RatePolicy {
    RatePolicy::new(name.to_owned(), limit, period)
}

async fn check<F: RateLimiterFixture>(fixture: &F, policy: &RatePolicy, key: &str) -> RateDecision {
    of_policy(fixture.limiter().check(policy, key).await.unwrap(), policy)
}

async fn peek<F: RateLimiterFixture>(fixture: &F, policy: &RatePolicy, key: &str) -> RateDecision {
    of_policy(fixture.limiter().peek(policy, key).await.unwrap(), policy)
}

/// `decision`, once it reports the limit of `policy`.
fn of_policy(decision: RateDecision, policy: &RatePolicy) -> RateDecision {
    assert_eq!(
        decision.limit, policy.limit,
        "RateLimit-Limit is the policy's"
    );
    decision
}

/// Spends the whole allowance of `key`, checking each decision allows it.
async fn exhaust<F: RateLimiterFixture>(fixture: &F, policy: &RatePolicy, key: &str) {
    for n in 1..=policy.limit {
        let decision = check(fixture, policy, key).await;
        assert!(decision.allowed, "request {n} of {} refused", policy.limit);
    }
}

/// Asserts `decision` is a refusal as the port describes it.
fn assert_refused(decision: &RateDecision, policy: &RatePolicy) {
    assert!(!decision.allowed, "a request over the limit passed");
    assert_eq!(decision.remaining, 0);
    assert!(
        decision.retry_after > Duration::ZERO && decision.retry_after <= policy.emission_interval(),
        "Retry-After {:?} is not within one emission interval {:?}",
        decision.retry_after,
        policy.emission_interval()
    );
    assert!(
        decision.reset_after >= decision.retry_after && decision.reset_after <= policy.period,
        "RateLimit-Reset {:?} outside Retry-After..=period",
        decision.reset_after
    );
}

/// Exactly `limit` requests pass, `remaining` counting down to 0 and the reset growing up to
/// the period; the next is refused with a `Retry-After` of at most one emission interval.
pub async fn a_burst_of_the_limit_passes_then_requests_are_refused<F: RateLimiterFixture>(
    fixture: &F,
) {
    let policy = policy("burst", 3, Duration::from_secs(60));
    let mut last_reset = Duration::ZERO;
    for expected_remaining in [2, 1, 0] {
        let decision = check(fixture, &policy, "client").await;
        assert!(decision.allowed);
        assert_eq!(decision.remaining, expected_remaining);
        assert_eq!(
            decision.retry_after,
            Duration::ZERO,
            "Retry-After on a pass"
        );
        assert!(
            decision.reset_after > last_reset && decision.reset_after <= policy.period,
            "RateLimit-Reset {:?} after {last_reset:?}",
            decision.reset_after
        );
        last_reset = decision.reset_after;
    }
    assert_refused(&check(fixture, &policy, "client").await, &policy);
}

/// A refused request does not push the next allowed one further away.
pub async fn refused_requests_spend_nothing<F: RateLimiterFixture>(fixture: &F) {
    let policy = policy("refusals", 1, Duration::from_secs(60));
    exhaust(fixture, &policy, "client").await;
    let first = check(fixture, &policy, "client").await;
    assert_refused(&first, &policy);
    for _ in 0..5 {
        let again = check(fixture, &policy, "client").await;
        assert_refused(&again, &policy);
        assert!(
            again.retry_after <= first.retry_after,
            "a refusal was counted: Retry-After grew from {:?} to {:?}",
            first.retry_after,
            again.retry_after
        );
    }
}

/// One key spending its allowance leaves another's whole.
pub async fn keys_are_counted_apart<F: RateLimiterFixture>(fixture: &F) {
    let policy = policy("keys", 2, Duration::from_secs(60));
    exhaust(fixture, &policy, "203.0.113.1").await;
    assert_refused(&check(fixture, &policy, "203.0.113.1").await, &policy);
    let other = check(fixture, &policy, "203.0.113.2").await;
    assert!(other.allowed, "another key was refused");
    assert_eq!(other.remaining, 1);
}

/// The same key under two policies has two allowances.
pub async fn policies_are_counted_apart<F: RateLimiterFixture>(fixture: &F) {
    let login = policy("login", 2, Duration::from_secs(60));
    let search = policy("search", 3, Duration::from_secs(60));
    exhaust(fixture, &login, "client").await;
    assert_refused(&check(fixture, &login, "client").await, &login);
    let other = check(fixture, &search, "client").await;
    assert!(other.allowed, "another policy's allowance was spent");
    assert_eq!(other.remaining, 2);
}

/// Once the `Retry-After` has passed, requests are allowed again.
pub async fn the_allowance_comes_back_with_time<F: RateLimiterFixture>(fixture: &F) {
    let policy = policy("refill", 2, Duration::from_millis(100));
    exhaust(fixture, &policy, "client").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let decision = check(fixture, &policy, "client").await;
        if decision.allowed {
            return;
        }
        assert!(Instant::now() < deadline, "the allowance never came back");
        crate::__private::tokio::time::sleep(decision.retry_after).await;
    }
}

/// A key never counted is allowed with its whole limit left and nothing to wait for.
pub async fn a_peek_at_an_unknown_key_finds_it_full<F: RateLimiterFixture>(fixture: &F) {
    let policy = policy("peek-unknown", 3, Duration::from_secs(60));
    let decision = peek(fixture, &policy, "nobody").await;
    assert!(decision.allowed, "an unknown key was refused");
    assert_eq!(decision.remaining, 3);
    assert_eq!(decision.reset_after, Duration::ZERO);
    assert_eq!(decision.retry_after, Duration::ZERO);
}

/// Peeking, however often, leaves the whole allowance to checks.
pub async fn peeks_spend_nothing<F: RateLimiterFixture>(fixture: &F) {
    let policy = policy("peek-free", 2, Duration::from_secs(60));
    for _ in 0..5 {
        assert!(peek(fixture, &policy, "client").await.allowed);
    }
    exhaust(fixture, &policy, "client").await;
}

/// After a check, a peek finds one less left, as the check reported; once the allowance is
/// spent, a peek is refused as the next check is, with a `Retry-After`.
pub async fn a_peek_reflects_what_was_spent<F: RateLimiterFixture>(fixture: &F) {
    let policy = policy("peek-spent", 2, Duration::from_secs(60));
    let spent = check(fixture, &policy, "client").await;
    let after = peek(fixture, &policy, "client").await;
    assert!(after.allowed);
    assert_eq!(after.remaining, spent.remaining);
    assert!(
        after.reset_after > Duration::ZERO && after.reset_after <= spent.reset_after,
        "RateLimit-Reset {:?} after the check's {:?}",
        after.reset_after,
        spent.reset_after
    );
    check(fixture, &policy, "client").await;
    assert_refused(&peek(fixture, &policy, "client").await, &policy);
    assert_refused(&check(fixture, &policy, "client").await, &policy);
}
