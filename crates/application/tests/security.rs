//! Security events and the audit policy: events reach the trail with their request's context,
//! refusals are tallied with their route (the first at once, the repeats in one write per key
//! and flush, within a bounded map, every one counted), and a trail that cannot be written costs
//! the event, not the request.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use markets_application::security::{Refusal, RequestContext, SecurityEvents, mask_email};
use markets_domain::RepositoryError;
use markets_domain::audit::{AuditAction, AuditEvent, AuditEventId, AuditLog, AuditPage};
use markets_domain::paging::PageSize;
use markets_domain::testing::InMemoryStore;
use markets_domain::user::UserId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn context() -> RequestContext {
    RequestContext {
        request_id: "req-7".into(),
        ip: Some("198.51.100.7".into()),
        network: None,
    }
}

async fn events_of(store: &InMemoryStore) -> Vec<AuditEvent> {
    store.page(None, PageSize::DEFAULT).await.unwrap().events
}

#[tokio::test]
async fn refusals_are_recorded_with_their_action_actor_and_route() {
    let store = InMemoryStore::new();
    let events = SecurityEvents::new(Arc::new(store.clone()));
    let bob = UserId::new();
    events
        .refused(
            Refusal::Forbidden,
            &context(),
            Some(bob),
            "DELETE /api/v1/markets/{id}",
        )
        .await;
    events
        .refused(
            Refusal::LoginThrottled,
            &context(),
            None,
            "POST /api/v1/auth/login",
        )
        .await;
    let recorded = events_of(&store).await;
    let (throttled, denied) = (&recorded[0], &recorded[1]);
    assert_eq!(denied.action, AuditAction::AccessDenied);
    assert_eq!(denied.actor_id, Some(bob));
    assert_eq!(denied.target_type.as_deref(), Some("route"));
    assert_eq!(
        denied.target_id.as_deref(),
        Some("DELETE /api/v1/markets/{id}")
    );
    assert_eq!(denied.request_id.as_deref(), Some("req-7"));
    assert_eq!(denied.ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(throttled.action, AuditAction::LoginRateLimited);
    assert_eq!(throttled.actor_id, None);
}

/// The in-memory trail, counting the tallies written to it, which fail while it is down.
#[derive(Debug, Default)]
struct Trail {
    store: InMemoryStore,
    down: AtomicBool,
    tallies: AtomicUsize,
}

impl Trail {
    fn writes(&self) -> usize {
        self.tallies.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), RepositoryError> {
        match self.down.load(Ordering::SeqCst) {
            true => Err(RepositoryError::unavailable("database", "down")),
            false => Ok(()),
        }
    }

    /// Every tallied row: its action, actor, address, target and count.
    async fn counts(&self) -> Vec<(AuditAction, Option<UserId>, Option<String>, u64)> {
        let mut rows: Vec<_> = events_of(&self.store)
            .await
            .into_iter()
            .map(|event| {
                (
                    event.action,
                    event.actor_id,
                    event.ip.clone(),
                    event.count().unwrap(),
                )
            })
            .collect();
        rows.sort_by_key(|row| (row.0.as_str(), row.2.clone(), row.3));
        rows
    }
}

#[async_trait]
impl AuditLog for Trail {
    async fn append(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        self.check()?;
        self.store.append(event).await
    }

    async fn tally(&self, event: &AuditEvent, count: u64) -> Result<(), RepositoryError> {
        self.tallies.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.store.tally(event, count).await
    }

    async fn page(
        &self,
        before: Option<AuditEventId>,
        limit: PageSize,
    ) -> Result<AuditPage, RepositoryError> {
        self.store.page(before, limit).await
    }

    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> Result<u64, RepositoryError> {
        self.store.purge_older_than(cutoff).await
    }
}

/// Security events over a fresh [`Trail`] holding at most `capacity` tally keys.
fn tallying(capacity: usize) -> (Arc<Trail>, SecurityEvents) {
    let trail = Arc::new(Trail::default());
    let events = SecurityEvents::with_tally_capacity(trail.clone(), capacity);
    (trail, events)
}

const ROUTE: &str = "DELETE /api/v1/markets/{id}";

/// Tallies `n` refusals of [`ROUTE`] by `actor` from `context`'s client, all in the same minute
/// (one event's time, so that no test depends on the wall clock's minute not turning over).
async fn refuse(
    events: &SecurityEvents,
    n: usize,
    context: &RequestContext,
    actor: Option<UserId>,
) {
    let refusal = context
        .event(AuditAction::AccessDenied, actor)
        .on("route", ROUTE);
    for _ in 0..n {
        events.tally(refusal.clone()).await;
    }
}

#[tokio::test]
async fn a_flood_of_refusals_costs_two_writes_and_counts_every_one() {
    let (trail, events) = tallying(SecurityEvents::TALLY_CAPACITY);
    let bob = Some(UserId::new());
    refuse(&events, 1000, &context(), bob).await;
    let ip = context().ip;
    let denied = AuditAction::AccessDenied;
    assert_eq!(
        trail.counts().await,
        [(denied, bob, ip.clone(), 1)],
        "the first at once"
    );
    assert_eq!(trail.writes(), 1, "the repeats are held");
    events.flush().await;
    assert_eq!(
        trail.counts().await,
        [(denied, bob, ip, 1000)],
        "every refusal counted"
    );
    assert_eq!(trail.writes(), 2, "one write for the 999 repeats");
    let first = &events_of(&trail.store).await[0];
    assert_eq!(
        first.request_id.as_deref(),
        Some("req-7"),
        "the first refusal names its request"
    );
    events.flush().await;
    assert_eq!(trail.writes(), 2, "nothing held, nothing written");
}

#[tokio::test]
async fn refusals_of_other_clients_actors_and_actions_are_counted_apart() {
    let (trail, events) = tallying(SecurityEvents::TALLY_CAPACITY);
    let other = RequestContext {
        ip: Some("203.0.113.9".into()),
        ..context()
    };
    let bob = Some(UserId::new());
    refuse(&events, 10, &context(), None).await;
    refuse(&events, 20, &other, None).await;
    refuse(&events, 30, &context(), bob).await;
    let throttled = context()
        .event(AuditAction::LoginRateLimited, None)
        .on("route", "POST /api/v1/auth/login");
    for _ in 0..40 {
        events.tally(throttled.clone()).await;
    }
    events.flush().await;
    let (ip, other) = (context().ip, other.ip);
    assert_eq!(
        trail.counts().await,
        [
            (AuditAction::LoginRateLimited, None, ip.clone(), 40),
            (AuditAction::AccessDenied, None, ip.clone(), 10),
            (AuditAction::AccessDenied, bob, ip, 30),
            (AuditAction::AccessDenied, None, other, 20),
        ]
    );
    assert_eq!(trail.writes(), 8, "two writes per key");
}

#[tokio::test]
async fn past_the_capacity_refusals_are_written_one_by_one_and_still_counted() {
    let (trail, events) = tallying(1);
    let other = RequestContext {
        ip: Some("203.0.113.9".into()),
        ..context()
    };
    refuse(&events, 10, &context(), None).await;
    refuse(&events, 10, &other, None).await;
    assert_eq!(
        trail.writes(),
        1 + 10,
        "the held key's first, every one of the other's"
    );
    events.flush().await;
    let counts: Vec<u64> = trail.counts().await.iter().map(|row| row.3).collect();
    assert_eq!(counts, [10, 10], "no count lost");
}

#[tokio::test]
async fn keys_of_a_minute_that_is_over_are_forgotten_at_the_flush() {
    let (trail, events) = tallying(1);
    let mut old = context()
        .event(AuditAction::AccessDenied, None)
        .on("route", ROUTE);
    old.at -= chrono::Duration::minutes(2);
    for _ in 0..3 {
        events.tally(old.clone()).await;
    }
    events.flush().await;
    assert_eq!(trail.writes(), 2);
    // The old key no longer takes the only place: the new one is held, not written each time.
    refuse(&events, 5, &context(), None).await;
    assert_eq!(trail.writes(), 3);
    events.flush().await;
    let counts: Vec<u64> = trail.counts().await.iter().map(|row| row.3).collect();
    assert_eq!(counts, [3, 5]);
}

#[tokio::test]
async fn a_count_that_cannot_be_written_waits_for_the_next_flush() {
    let (trail, events) = tallying(SecurityEvents::TALLY_CAPACITY);
    trail.set_down(true);
    refuse(&events, 5, &context(), None).await;
    events.flush().await;
    assert!(trail.counts().await.is_empty());
    trail.set_down(false);
    events.flush().await;
    assert_eq!(
        trail
            .counts()
            .await
            .iter()
            .map(|row| row.3)
            .collect::<Vec<_>>(),
        [5]
    );
}

#[tokio::test]
async fn a_trail_that_cannot_be_written_does_not_fail_the_caller() {
    let (trail, events) = tallying(SecurityEvents::TALLY_CAPACITY);
    trail.set_down(true);
    // Returns (no panic, no error to handle): the failure is logged with the request id.
    events
        .record(context().event(AuditAction::Registered, None))
        .await;
    refuse(&events, 1, &context(), None).await;
}

#[test]
fn emails_are_masked_to_their_first_character_and_domain() {
    assert_eq!(mask_email("ann.secret@example.com"), "a…@example.com");
    assert_eq!(mask_email("  ann@example.com "), "a…@example.com");
    assert_eq!(mask_email("nobody"), "n…@");
}

/// A refusal is tallied under the client's network (an IPv6 host's /64), so rotating through
/// its addresses adds no rows.
#[tokio::test]
async fn refusals_of_one_network_are_tallied_under_it() {
    let (trail, events) = tallying(SecurityEvents::TALLY_CAPACITY);
    let network = "2001:db8:0:1::/64";
    for host in ["2001:db8:0:1::1", "2001:db8:0:1::2"] {
        let context = RequestContext {
            ip: Some(host.into()),
            network: Some(network.into()),
            ..context()
        };
        events
            .refused(Refusal::Forbidden, &context, None, ROUTE)
            .await;
    }
    events.flush().await;
    let counts = trail.counts().await;
    assert!(
        counts
            .iter()
            .all(|(_, _, ip, _)| ip.as_deref() == Some(network)),
        "{counts:?}"
    );
    assert_eq!(counts.iter().map(|(.., count)| count).sum::<u64>(), 2);
}
