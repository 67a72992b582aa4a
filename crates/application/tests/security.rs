//! Security events and the audit policy: events reach the trail with their request's context,
//! refusals are recorded with their route, and a trail that cannot be written costs the event,
//! not the request.
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

fn context() -> RequestContext {
    RequestContext {
        request_id: "req-7".into(),
        ip: Some("198.51.100.7".into()),
    }
}

async fn trail(store: &InMemoryStore) -> Vec<AuditEvent> {
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
    let recorded = trail(&store).await;
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

/// A trail whose store is down.
#[derive(Debug)]
struct Down;

#[async_trait]
impl AuditLog for Down {
    async fn append(&self, _: &AuditEvent) -> Result<(), RepositoryError> {
        Err(RepositoryError::unavailable("database", "down"))
    }

    async fn tally(&self, _: &AuditEvent, _: u64) -> Result<(), RepositoryError> {
        Err(RepositoryError::unavailable("database", "down"))
    }

    async fn page(
        &self,
        _: Option<AuditEventId>,
        _: PageSize,
    ) -> Result<AuditPage, RepositoryError> {
        Err(RepositoryError::unavailable("database", "down"))
    }

    async fn purge_older_than(&self, _: DateTime<Utc>) -> Result<u64, RepositoryError> {
        Err(RepositoryError::unavailable("database", "down"))
    }
}

#[tokio::test]
async fn a_trail_that_cannot_be_written_does_not_fail_the_caller() {
    let events = SecurityEvents::new(Arc::new(Down));
    // Returns (no panic, no error to handle): the failure is logged with the request id.
    events
        .record(context().event(AuditAction::Registered, None))
        .await;
}

#[test]
fn emails_are_masked_to_their_first_character_and_domain() {
    assert_eq!(mask_email("ann.secret@example.com"), "a…@example.com");
    assert_eq!(mask_email("  ann@example.com "), "a…@example.com");
    assert_eq!(mask_email("nobody"), "n…@");
}
