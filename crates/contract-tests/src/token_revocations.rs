//! The contract of [`TokenRevocations`]: a revoked token is revoked until the expiry it was
//! revoked with and not a moment longer, revoking is idempotent, and `active` lists exactly the
//! revocations still running, with their expiries (a cache that lost them is refilled from it).
//!
//! Expiries are whole seconds, as a token's `exp` is. The case that needs an expiry to pass
//! revokes until a couple of seconds ahead and then polls, with a deadline, until the token is
//! no longer revoked.

use chrono::{DateTime, TimeDelta, Utc};
use markets_domain::auth::TokenRevocations;
use std::time::Duration;

/// Token revocations over fresh, empty storage.
pub trait TokenRevocationsFixture: Send + Sync + 'static {
    /// The revocations under test.
    type Revocations: TokenRevocations;

    /// The revocations.
    fn revocations(&self) -> &Self::Revocations;
}

/// Generates one `#[test]` per token revocations contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of a [`TokenRevocationsFixture`]).
#[macro_export]
macro_rules! token_revocations_contract {
    ($make:expr) => {
        $crate::__contract_cases!(token_revocations, $make;
            tokens_never_revoked_are_not_revoked,
            revoked_tokens_are_revoked_and_listed_with_their_expiry,
            revoking_twice_is_idempotent,
            a_revocation_already_expired_is_neither_revoked_nor_active,
            a_revocation_lapses_when_its_expiry_passes,
        );
    };
}

/// The whole second `seconds` from now (negative: ago), as a token's `exp` would be.
fn in_seconds(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp() + seconds, 0).unwrap()
}

async fn is_revoked<F: TokenRevocationsFixture>(fixture: &F, token_id: &str) -> bool {
    fixture.revocations().is_revoked(token_id).await.unwrap()
}

/// The active revocations, in token id order (the port promises none).
async fn active<F: TokenRevocationsFixture>(fixture: &F) -> Vec<(String, DateTime<Utc>)> {
    let mut active = fixture.revocations().active().await.unwrap();
    active.sort();
    active
}

/// Nothing is revoked in fresh storage, and revoking a token revokes no other, not even one
/// whose id it starts with.
pub async fn tokens_never_revoked_are_not_revoked<F: TokenRevocationsFixture>(fixture: &F) {
    assert!(!is_revoked(fixture, "never-revoked").await);
    assert!(
        active(fixture).await.is_empty(),
        "revocations in fresh storage"
    );
    let revocations = fixture.revocations();
    revocations
        .revoke("revoked", in_seconds(600))
        .await
        .unwrap();
    assert!(
        !is_revoked(fixture, "never-revoked").await,
        "revoking one token revoked another"
    );
    assert!(
        !is_revoked(fixture, "revoke").await,
        "a prefix of a revoked id is revoked"
    );
}

/// Revoked tokens are revoked, and `active` lists each with the expiry it was revoked with.
pub async fn revoked_tokens_are_revoked_and_listed_with_their_expiry<F: TokenRevocationsFixture>(
    fixture: &F,
) {
    let (sooner, later) = (in_seconds(600), in_seconds(3600));
    let revocations = fixture.revocations();
    revocations.revoke("sooner", sooner).await.unwrap();
    revocations.revoke("later", later).await.unwrap();
    assert!(is_revoked(fixture, "sooner").await);
    assert!(is_revoked(fixture, "later").await);
    assert_eq!(
        active(fixture).await,
        [("later".to_owned(), later), ("sooner".to_owned(), sooner)]
    );
}

/// Revoking a revoked token again (a retried logout) succeeds and changes nothing.
pub async fn revoking_twice_is_idempotent<F: TokenRevocationsFixture>(fixture: &F) {
    let until = in_seconds(600);
    let revocations = fixture.revocations();
    revocations.revoke("twice", until).await.unwrap();
    revocations.revoke("twice", until).await.unwrap();
    assert!(is_revoked(fixture, "twice").await);
    assert_eq!(active(fixture).await, [("twice".to_owned(), until)]);
}

/// Revoking a token that has expired already (a logout racing its expiry) is accepted, and
/// leaves the token unrevoked (it is refused as expired anyway) and out of `active`.
pub async fn a_revocation_already_expired_is_neither_revoked_nor_active<
    F: TokenRevocationsFixture,
>(
    fixture: &F,
) {
    let until = in_seconds(600);
    let revocations = fixture.revocations();
    revocations
        .revoke("expired", in_seconds(-60))
        .await
        .unwrap();
    revocations.revoke("live", until).await.unwrap();
    assert!(!is_revoked(fixture, "expired").await);
    assert!(is_revoked(fixture, "live").await);
    assert_eq!(active(fixture).await, [("live".to_owned(), until)]);
}

/// Once its expiry has passed, a token is no longer revoked nor listed: the store is not
/// left to hold it forever.
pub async fn a_revocation_lapses_when_its_expiry_passes<F: TokenRevocationsFixture>(fixture: &F) {
    // Two to three seconds ahead: enough to see it revoked first on a slow machine.
    let until = in_seconds(3);
    fixture.revocations().revoke("brief", until).await.unwrap();
    assert!(is_revoked(fixture, "brief").await, "revoked at once");
    let deadline = until + TimeDelta::seconds(10);
    while is_revoked(fixture, "brief").await {
        assert!(Utc::now() < deadline, "still revoked 10 s after its expiry");
        crate::__private::tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        active(fixture).await.is_empty(),
        "an expired revocation is active"
    );
}
