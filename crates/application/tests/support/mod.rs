//! What the application's tests share: a store with one user and their market, handlers over
//! the in-memory fakes, and waiting on tokio's paused clock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use markets_application::handlers::{Indexer, JobHandlers};
use markets_domain::RepositoryError;
use markets_domain::auth::PasswordHash;
use markets_domain::cache::NoCache;
use markets_domain::market::{
    Description, MarketDraft, MarketId, MarketName, MarketService, MarketStatus, Volume,
};
use markets_domain::permission::{Actor, Role};
use markets_domain::search::{
    Embedding, EmbeddingError, EmbeddingProvider, IndexBacklog, IndexPacing, IndexService,
    IndexTask,
};
use markets_domain::testing::{InMemoryStore, RecordingNotifier};
use markets_domain::user::{DisplayName, Email, NewUser, User, UserId, UserRepository};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Waits until `done` holds, letting tokio's paused clock advance a millisecond at a time, for
/// at most a simulated minute; panics with `what` if it never does.
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    for _ in 0..60_000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

/// A registered user (password `password`, stored by the plaintext fake hasher).
pub async fn user(store: &InMemoryStore, email: &str) -> User {
    UserRepository::create(
        store,
        NewUser {
            id: UserId::new(),
            email: Email::parse(email).unwrap(),
            display_name: DisplayName::parse("Ann").unwrap(),
            password_hash: PasswordHash::new("plain$password"),
            role: Role::User,
            email_verified: true,
        },
    )
    .await
    .unwrap()
}

/// A market created through the service, so its jobs are in the store's outbox.
pub async fn market(store: &InMemoryStore, creator: &User, name: &str) -> MarketId {
    let service = MarketService::new(store.clone(), NoCache);
    let actor = Actor::User {
        id: creator.id,
        role: creator.role,
    };
    let draft = MarketDraft {
        name: MarketName::parse(name).unwrap(),
        description: Description::parse("").unwrap(),
        status: MarketStatus::Open,
        volume: Volume::ZERO,
    };
    service.create(&actor, draft).await.unwrap().id
}

/// A backlog of no work: indexing jobs find nothing to claim and succeed at once (`Empty`), or
/// their claims never answer, as behind a database that hangs (`Stuck`).
#[derive(Debug, Clone, Copy)]
pub enum Backlog {
    Empty,
    Stuck,
}

#[async_trait]
impl IndexBacklog for Backlog {
    async fn claim(&self, _: usize, _: Duration) -> Result<Vec<IndexTask>, RepositoryError> {
        match self {
            Self::Empty => Ok(Vec::new()),
            Self::Stuck => std::future::pending().await,
        }
    }

    async fn store(&self, _: &[(IndexTask, Embedding)]) -> Result<usize, RepositoryError> {
        Ok(0)
    }

    async fn release(&self, _: &[IndexTask]) -> Result<(), RepositoryError> {
        Ok(())
    }

    async fn mark_all_stale(&self) -> Result<u64, RepositoryError> {
        Ok(0)
    }

    async fn pending_count(&self) -> Result<u64, RepositoryError> {
        Ok(0)
    }
}

/// An embedder of constant vectors.
#[derive(Debug, Default)]
pub struct ConstantEmbedder;

#[async_trait]
impl EmbeddingProvider for ConstantEmbedder {
    fn dimensions(&self) -> usize {
        2
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Embedding>, EmbeddingError> {
        Ok(texts
            .iter()
            .map(|_| Embedding::new(vec![1.0, 0.0]).unwrap())
            .collect())
    }
}

/// An indexer over `backlog`.
pub fn indexer(backlog: Arc<dyn IndexBacklog>) -> Indexer {
    IndexService::new(Arc::new(ConstantEmbedder), backlog, IndexPacing::default())
}

/// Makes `store`'s job queue tell the time by tokio's clock (paused in these tests), so leases
/// and delays run out in simulated time.
pub fn follow_tokio_clock(store: &InMemoryStore) {
    let (epoch, start) = (chrono::Utc::now(), tokio::time::Instant::now());
    store.set_clock(Arc::new(move || {
        epoch + chrono::Duration::from_std(start.elapsed()).unwrap()
    }));
}

/// Job handlers over `store`, sending to `notifier`, with nothing to index.
pub fn handlers(store: &InMemoryStore, notifier: &RecordingNotifier) -> JobHandlers {
    JobHandlers::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(notifier.clone()),
        indexer(Arc::new(Backlog::Empty)),
        "https://markets.example.com/",
    )
}
