//! The maintenance loops: the audit purge keeps what is within the retention and nothing when
//! told to keep everything, held refusals reach the trail every flush period and once more on
//! stop, and periodic tasks run on their period.
#![allow(clippy::unwrap_used)]

mod support;

use markets_application::maintenance::{
    TALLY_FLUSH_EVERY, every, flush_tallies, purge_audit_trail, purge_idempotency_keys,
};
use markets_application::security::{Refusal, RequestContext, SecurityEvents};
use markets_domain::audit::{AuditAction, AuditEvent, AuditLog};
use markets_domain::market::{
    Creation, Description, IdempotencyKey, MarketId, MarketName, MarketRepository, MarketStatus,
    NewMarket, Volume,
};
use markets_domain::paging::PageSize;
use markets_domain::testing::InMemoryStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::eventually;
use tokio::sync::watch;

async fn store_with_old_and_new_events() -> InMemoryStore {
    let store = InMemoryStore::new();
    let mut old = AuditEvent::new(AuditAction::Logout);
    old.at -= chrono::Duration::days(91);
    store.append(&old).await.unwrap();
    store
        .append(&AuditEvent::new(AuditAction::Registered))
        .await
        .unwrap();
    store
}

async fn actions(store: &InMemoryStore) -> Vec<AuditAction> {
    let page = store.page(None, PageSize::DEFAULT).await.unwrap();
    page.events.iter().map(|event| event.action).collect()
}

#[tokio::test(start_paused = true)]
async fn the_purge_deletes_only_events_past_the_retention() {
    let store = store_with_old_and_new_events().await;
    let purger = purge_audit_trail(Arc::new(store.clone()), 90);
    eventually("the old event is purged", || async {
        actions(&store).await == [AuditAction::Registered]
    })
    .await;
    purger.abort();
}

#[tokio::test(start_paused = true)]
async fn expired_idempotency_keys_are_purged_and_fresh_ones_kept() {
    let store = InMemoryStore::new();
    let ann = support::user(&store, "ann@example.com").await;
    let market = NewMarket {
        id: MarketId::new(),
        creator_id: ann.id,
        name: MarketName::parse("Rain?").unwrap(),
        description: Description::parse("").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::ZERO,
    };
    let (old, fresh) = (
        IdempotencyKey::parse("old", "f").unwrap(),
        IdempotencyKey::parse("fresh", "f").unwrap(),
    );
    store.create_once(market.clone(), &[], &old).await.unwrap();
    store.age_keys(chrono::Duration::hours(25));
    let again = NewMarket {
        id: MarketId::new(),
        ..market
    };
    store.create_once(again.clone(), &[], &fresh).await.unwrap();
    let purger = purge_idempotency_keys(Arc::new(store.clone()));
    assert_eq!(store.idempotency_keys(), 2);
    eventually("the expired key is purged", || async {
        store.idempotency_keys() == 1
    })
    .await;
    purger.abort();
    let replayed = store.create_once(again.clone(), &[], &fresh).await.unwrap();
    assert!(matches!(replayed, Creation::Replayed(_)), "{replayed:?}");
    let anew = NewMarket {
        id: MarketId::new(),
        ..again
    };
    let created = store.create_once(anew, &[], &old).await.unwrap();
    assert!(matches!(created, Creation::Created(_)), "{created:?}");
}

#[tokio::test(start_paused = true)]
async fn a_retention_of_zero_keeps_everything() {
    let store = store_with_old_and_new_events().await;
    purge_audit_trail(Arc::new(store.clone()), 0).await.unwrap();
    assert_eq!(actions(&store).await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn periodic_tasks_run_once_per_period() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let task = every(Duration::from_secs(60), move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "not before the first period"
    );
    tokio::time::sleep(Duration::from_secs(122)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    task.abort();
}

/// The refusals the trail counts (the sum of its rows' counts).
async fn counted(store: &InMemoryStore) -> u64 {
    let page = store.page(None, PageSize::DEFAULT).await.unwrap();
    page.events.iter().filter_map(AuditEvent::count).sum()
}

async fn refuse(events: &SecurityEvents, n: usize) {
    for _ in 0..n {
        let context = RequestContext::default();
        events
            .refused(Refusal::LoginThrottled, &context, None, "POST /login")
            .await;
    }
}

#[tokio::test(start_paused = true)]
async fn held_refusals_reach_the_trail_each_period_and_on_stop() {
    let store = InMemoryStore::new();
    let events = SecurityEvents::new(Arc::new(store.clone()));
    let (stop, stopped) = watch::channel(false);
    let flusher = flush_tallies(events.clone(), stopped);
    refuse(&events, 3).await;
    assert_eq!(
        counted(&store).await,
        1,
        "the first at once, the repeats held"
    );
    tokio::time::sleep(TALLY_FLUSH_EVERY + Duration::from_millis(1)).await;
    assert_eq!(counted(&store).await, 3, "flushed after a period");
    refuse(&events, 2).await;
    stop.send(true).unwrap();
    flusher.await.unwrap();
    assert_eq!(counted(&store).await, 5, "drained on stop");
}
