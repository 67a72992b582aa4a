//! The contract of [`AuditLog`]: events read back as written, newest first in keyset pages, the
//! retention purge, tallies (one row per key whose count adds up, concurrent tallies included),
//! and the events that role changes and deletions store in their own
//! transaction (through the fixture's repositories, as the services do): stored when the change
//! happens, not when there was nothing to change.

use chrono::{TimeDelta, Utc};
use markets_domain::audit::{AuditAction, AuditEvent, AuditEventId, AuditLog, AuditPage};
use markets_domain::market::{MarketRepository, MarketStatus, PageSize};
use markets_domain::permission::Role;
use markets_domain::user::{UserId, UserRepository};

use crate::RepositoryFixture;
use crate::repository::{new_market, user};

/// An audit log over fresh, empty storage, with the repositories whose changes write to it.
pub trait AuditLogFixture: RepositoryFixture {
    /// The log under test, over the same storage as [`RepositoryFixture::Users`] and
    /// [`RepositoryFixture::Markets`].
    type Log: AuditLog;

    /// The log.
    fn audit(&self) -> &Self::Log;
}

/// Generates one `#[test]` per audit log contract case, each on a fixture from `$make`
/// (an expression evaluating to a future of an [`AuditLogFixture`]).
#[macro_export]
macro_rules! audit_log_contract {
    ($make:expr) => {
        $crate::__contract_cases!(audit_log, $make;
            appended_events_read_back_as_written,
            pages_go_newest_first_and_continue_before_the_cursor,
            a_walk_in_pages_returns_every_event_once_and_ends_with_no_more,
            purge_removes_only_events_older_than_the_cutoff,
            tallies_of_one_key_make_one_row_whose_count_is_their_sum,
            tallies_of_other_actions_minutes_actors_clients_or_targets_are_other_rows,
            concurrent_tallies_of_one_key_lose_no_count,
            tallied_and_appended_events_never_merge,
            a_tally_whose_row_was_purged_starts_again,
            a_role_change_stores_its_event_only_if_it_applies,
            a_deletion_stores_its_event_only_if_it_applies,
        );
    };
}

fn size(limit: u32) -> PageSize {
    PageSize::new("limit", limit).unwrap()
}

/// Everything in the log, newest first.
async fn all<F: AuditLogFixture>(fixture: &F) -> Vec<AuditEvent> {
    let page = fixture
        .audit()
        .page(None, size(PageSize::MAX))
        .await
        .unwrap();
    assert!(!page.has_more, "the contract cases store fewer than a page");
    page.events
}

/// Appends `n` events, one after another, and returns their ids newest first.
async fn append_many<F: AuditLogFixture>(fixture: &F, n: usize) -> Vec<AuditEventId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let event = AuditEvent::new(AuditAction::Logout);
        fixture.audit().append(&event).await.unwrap();
        ids.push(event.id);
    }
    ids.reverse();
    ids
}

fn ids_of(page: &AuditPage) -> Vec<AuditEventId> {
    page.events.iter().map(|event| event.id).collect()
}

/// Every field, optional ones included, survives the store.
pub async fn appended_events_read_back_as_written<F: AuditLogFixture>(fixture: &F) {
    let full = AuditEvent::new(AuditAction::RoleChanged)
        .by(Some(UserId::new()))
        .on("user", UserId::new())
        .with("role", "moderator")
        .with("note", "quotes \" and ünïcode");
    let full = AuditEvent {
        request_id: Some("req-1".to_owned()),
        ip: Some("192.0.2.7".to_owned()),
        ..full
    };
    let bare = AuditEvent::new(AuditAction::LoginFailed);
    fixture.audit().append(&full).await.unwrap();
    fixture.audit().append(&bare).await.unwrap();
    assert_eq!(all(fixture).await, vec![bare, full]);
}

/// Pages hold at most `limit` events, newest first; the last id of a page continues it, and
/// `has_more` says whether it does.
pub async fn pages_go_newest_first_and_continue_before_the_cursor<F: AuditLogFixture>(fixture: &F) {
    let ids = append_many(fixture, 5).await;
    let page =
        |before, limit| async move { fixture.audit().page(before, size(limit)).await.unwrap() };
    let first = page(None, 2).await;
    assert_eq!((ids_of(&first), first.has_more), (ids[..2].to_vec(), true));
    assert_eq!(first.next(), Some(ids[1]), "continues after its last event");
    let second = page(Some(ids[1]), 2).await;
    assert_eq!(
        (ids_of(&second), second.has_more),
        (ids[2..4].to_vec(), true)
    );
    let last = page(Some(ids[3]), 2).await;
    assert_eq!((ids_of(&last), last.has_more), (ids[4..].to_vec(), false));
    assert_eq!(last.next(), None, "the last page has no successor");
    let past = page(Some(ids[4]), 2).await;
    assert!(
        past.events.is_empty() && !past.has_more,
        "nothing before the oldest"
    );
    let exact = page(None, 5).await;
    assert_eq!(
        (exact.events.len(), exact.has_more),
        (5, false),
        "a full last page"
    );
    let unknown = page(Some(AuditEventId::new()), 10).await;
    assert_eq!(
        unknown.events.len(),
        5,
        "a cursor need not name a stored event"
    );
}

/// Following `next` from the first page visits every event exactly once, newest first, for
/// page sizes that divide the count and ones that do not, up to the largest; only the last page
/// says that nothing follows, and it is never empty.
pub async fn a_walk_in_pages_returns_every_event_once_and_ends_with_no_more<F: AuditLogFixture>(
    fixture: &F,
) {
    let ids = append_many(fixture, 12).await;
    for limit in [1, 3, 5, 12, PageSize::MAX] {
        let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = fixture.audit().page(before, size(limit)).await.unwrap();
            pages += 1;
            assert!(
                !page.events.is_empty(),
                "limit {limit}: page {pages} is empty"
            );
            seen.extend(ids_of(&page));
            match page.next() {
                Some(next) => before = Some(next),
                None => {
                    assert!(!page.has_more, "limit {limit}: no next but more");
                    break;
                }
            }
        }
        assert_eq!(seen, ids, "limit {limit}: every event once, newest first");
        assert_eq!(pages, ids.len().div_ceil(limit as usize), "limit {limit}");
    }
}

/// `purge_older_than` deletes what happened strictly before the cutoff and counts it.
pub async fn purge_removes_only_events_older_than_the_cutoff<F: AuditLogFixture>(fixture: &F) {
    let now = Utc::now();
    let aged = |days: i64| AuditEvent {
        at: AuditEvent::new(AuditAction::Logout).at - TimeDelta::days(days),
        ..AuditEvent::new(AuditAction::Logout)
    };
    let (old, older, fresh) = (aged(40), aged(100), aged(0));
    for event in [&old, &older, &fresh] {
        fixture.audit().append(event).await.unwrap();
    }
    let cutoff = now - TimeDelta::days(30);
    assert_eq!(fixture.audit().purge_older_than(cutoff).await.unwrap(), 2);
    assert_eq!(all(fixture).await, vec![fresh]);
    assert_eq!(fixture.audit().purge_older_than(cutoff).await.unwrap(), 0);
}

/// `update_role` stores its event with the change and the role it replaced, and none for an
/// unknown user.
pub async fn a_role_change_stores_its_event_only_if_it_applies<F: AuditLogFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let event = AuditEvent::new(AuditAction::RoleChanged).on("user", ann.id);
    let changed = fixture
        .users()
        .update_role(ann.id, Role::Moderator, Some(&event))
        .await
        .unwrap();
    assert_eq!(changed.map(|change| change.previous), Some(Role::User));
    let missing = AuditEvent::new(AuditAction::RoleChanged);
    let nobody = fixture
        .users()
        .update_role(UserId::new(), Role::Admin, Some(&missing))
        .await
        .unwrap();
    assert!(nobody.is_none());
    let stored = event.with_previous_role(Role::User);
    assert_eq!(stored.details["previous_role"], "user");
    assert_eq!(all(fixture).await, vec![stored]);
}

/// `delete` stores its event with the deletion, and none when there was nothing to delete or
/// the market was not at the version the delete was given.
pub async fn a_deletion_stores_its_event_only_if_it_applies<F: AuditLogFixture>(fixture: &F) {
    let ann = user(fixture, "ann").await;
    let market = new_market(&ann, "Doomed", MarketStatus::Open, 0);
    let market = fixture.markets().create(market, &[]).await.unwrap();
    let stale = AuditEvent::new(AuditAction::MarketDeleted);
    assert!(
        !fixture
            .markets()
            .delete(market.id, Some(market.version + 1), Some(&stale))
            .await
            .unwrap()
    );
    let event = AuditEvent::new(AuditAction::MarketDeleted).on("market", market.id);
    assert!(
        fixture
            .markets()
            .delete(market.id, None, Some(&event))
            .await
            .unwrap()
    );
    let again = AuditEvent::new(AuditAction::MarketDeleted);
    assert!(
        !fixture
            .markets()
            .delete(market.id, None, Some(&again))
            .await
            .unwrap()
    );
    assert_eq!(all(fixture).await, vec![event]);
}

/// A refusal as a front end tallies it: an action, client, actor and target.
fn refusal(action: AuditAction, actor: Option<UserId>, ip: &str, route: &str) -> AuditEvent {
    AuditEvent {
        ip: Some(ip.to_owned()),
        request_id: Some(format!("req-{}", AuditEventId::new())),
        ..AuditEvent::new(action).by(actor).on("route", route)
    }
}

/// A repeat of `event`: another request of the same key (same minute), with an id of its own.
fn repeat(event: &AuditEvent) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::new(),
        request_id: Some("req-repeat".to_owned()),
        ..event.clone()
    }
}

/// The first tally of a key stores its event with the count; later ones of the same key, even
/// from other events (other ids and requests), add their counts to that row and change nothing
/// else. The count reads back in `details`.
pub async fn tallies_of_one_key_make_one_row_whose_count_is_their_sum<F: AuditLogFixture>(
    fixture: &F,
) {
    let first = refusal(
        AuditAction::LoginRateLimited,
        None,
        "192.0.2.1",
        "POST /login",
    );
    fixture.audit().tally(&first, 1).await.unwrap();
    fixture.audit().tally(&repeat(&first), 4).await.unwrap();
    fixture.audit().tally(&repeat(&first), 995).await.unwrap();
    let stored = all(fixture).await;
    assert_eq!(
        stored,
        vec![first.counted(1000)],
        "one row, the first event's"
    );
    assert_eq!(stored[0].details["count"], "1000");
    assert_eq!(stored[0].count(), Some(1000));
}

/// A tally key is the action, minute, actor, client address and target: a change in any one of
/// them makes another row, each with its own count.
pub async fn tallies_of_other_actions_minutes_actors_clients_or_targets_are_other_rows<
    F: AuditLogFixture,
>(
    fixture: &F,
) {
    let base = refusal(
        AuditAction::AccessDenied,
        None,
        "192.0.2.1",
        "DELETE /m/{id}",
    );
    let earlier = AuditEvent {
        at: base.at - TimeDelta::minutes(1),
        ..repeat(&base)
    };
    let variants = [
        AuditEvent {
            action: AuditAction::LoginRateLimited,
            ..repeat(&base)
        },
        earlier,
        repeat(&base).by(Some(UserId::new())),
        AuditEvent {
            ip: Some("192.0.2.2".to_owned()),
            ..repeat(&base)
        },
        repeat(&base).on("route", "PATCH /m/{id}"),
    ];
    fixture.audit().tally(&base, 2).await.unwrap();
    for (n, variant) in variants.iter().enumerate() {
        assert_ne!(variant.tally_key(), base.tally_key(), "variant {n}");
        fixture.audit().tally(variant, 3).await.unwrap();
    }
    fixture.audit().tally(&repeat(&base), 5).await.unwrap();
    let stored = all(fixture).await;
    assert_eq!(stored.len(), 6, "one row per key: {stored:#?}");
    let count_of = |event: &AuditEvent| {
        let row = stored.iter().find(|row| row.id == event.id);
        row.and_then(AuditEvent::count)
    };
    assert_eq!(count_of(&base), Some(7), "the base key's tallies add up");
    for variant in &variants {
        assert_eq!(count_of(variant), Some(3), "{variant:?}");
    }
}

/// Tallies of one key from many tasks at once (as from several requests or instances) lose no
/// count and make one row.
pub async fn concurrent_tallies_of_one_key_lose_no_count<F: AuditLogFixture>(fixture: &F) {
    let first = refusal(
        AuditAction::AccessDenied,
        Some(UserId::new()),
        "::1",
        "GET /a",
    );
    let tallies = |n: u64| {
        let event = repeat(&first);
        async move {
            for _ in 0..25 {
                fixture.audit().tally(&event, n).await.unwrap();
            }
        }
    };
    tokio::join!(
        tallies(1),
        tallies(2),
        tallies(3),
        tallies(4),
        tallies(5),
        tallies(6),
        tallies(7),
        tallies(8)
    );
    let stored = all(fixture).await;
    assert_eq!(stored.len(), 1, "one row: {stored:#?}");
    assert_eq!(stored[0].count(), Some(25 * 36), "every count kept");
}

/// An appended event is a row of its own, however like a tallied one it is, and carries no count.
pub async fn tallied_and_appended_events_never_merge<F: AuditLogFixture>(fixture: &F) {
    let appended = refusal(AuditAction::AccessDenied, None, "192.0.2.9", "GET /a");
    let tallied = repeat(&appended);
    fixture.audit().append(&appended).await.unwrap();
    fixture.audit().tally(&tallied, 2).await.unwrap();
    fixture.audit().append(&repeat(&appended)).await.unwrap();
    fixture.audit().tally(&repeat(&appended), 3).await.unwrap();
    let stored = all(fixture).await;
    assert_eq!(stored.len(), 3, "{stored:#?}");
    assert_eq!(stored[1], tallied.counted(5));
    assert_eq!(stored[2], appended, "no count on an appended event");
}

/// Once its row is purged, a key's next tally makes a new row counting only itself.
pub async fn a_tally_whose_row_was_purged_starts_again<F: AuditLogFixture>(fixture: &F) {
    let mut old = refusal(AuditAction::LoginRateLimited, None, "::2", "POST /login");
    old.at -= TimeDelta::days(100);
    fixture.audit().tally(&old, 9).await.unwrap();
    fixture
        .audit()
        .purge_older_than(Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    let again = repeat(&old);
    fixture.audit().tally(&again, 2).await.unwrap();
    assert_eq!(all(fixture).await, vec![again.counted(2)]);
}
