//! The port through which markets are stored.

use async_trait::async_trait;

use super::idempotency::{Creation, IdempotencyKey};
use super::model::{Market, MarketPatch, MarketSummary, NewMarket};
use super::query::{KeysetPage, KeysetRequest, MarketFilter, MarketSort};
use super::search::{ScoredSummary, SearchLimit, SearchQuery};
use super::values::MarketId;
use crate::audit::AuditEvent;
use crate::error::RepositoryError;
use crate::jobs::NewJob;
use crate::paging::{Page, PageRequest};
use crate::user::UserId;

/// Why a market could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateMarketError {
    /// The creator named in the new market does not exist.
    #[error("creator {0} does not exist")]
    UnknownCreator(UserId),
    /// The creator already used this idempotency key, with a request of another fingerprint.
    #[error("the idempotency key was used with another request")]
    KeyReused,
    /// A request with this idempotency key is still being carried out, here or on another
    /// instance.
    #[error("a request with this idempotency key is still in progress")]
    KeyInFlight,
    /// The store failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Stores markets. Implementations must pass `markets_contract_tests`' market repository suite.
///
/// Every method that returns markets fills in their [`Creator`](super::Creator) without issuing
/// one query per market, and list methods read only the summary columns (never the description
/// or the embedding). Any store failure is a [`RepositoryError`].
#[async_trait]
pub trait MarketRepository: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new market and returns it as stored (with its timestamps), together with
    /// `jobs` in the same transaction: both are stored, or neither.
    ///
    /// # Errors
    /// [`CreateMarketError::UnknownCreator`] if `market.creator_id` names no user.
    async fn create(&self, market: NewMarket, jobs: &[NewJob])
    -> Result<Market, CreateMarketError>;

    /// [`MarketRepository::create`] under the creator's idempotency `key`, in one transaction
    /// with the key's record (so neither exists without the other): the first create with a key
    /// stores the market, its jobs and the key with the market as returned; a repeat with the
    /// same fingerprint within [`IdempotencyKey::LIFETIME`] stores nothing and returns that
    /// market as [`Creation::Replayed`]. An expired key counts as unused.
    ///
    /// # Errors
    /// [`CreateMarketError::KeyReused`] for a repeat with another fingerprint;
    /// [`CreateMarketError::KeyInFlight`] while another transaction holds the key (a store
    /// that runs one write at a time never reports it); else as `create`.
    async fn create_once(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
        key: &IdempotencyKey,
    ) -> Result<Creation, CreateMarketError>;

    /// Forgets the idempotency keys older than [`IdempotencyKey::LIFETIME`]; how many.
    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError>;

    /// The market with this id, or `None`. May come from a read replica a moment behind the
    /// store's latest write (its own creations excepted: a market created through this store
    /// is found); [`MarketRepository::find_latest`] is never behind.
    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError>;

    /// The market with this id as the latest committed write left it, or `None`: for the reads
    /// that decide a write (version checks) or replace an answer known to be stale. Never
    /// shared with another caller's read, never from a replica.
    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError>;

    /// The markets with these ids, in one round trip, in no particular order; unknown ids are
    /// skipped and duplicates collapse.
    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError>;

    /// One offset page of the markets matching `filter` in `sort` order (ties broken by id),
    /// with the exact number of matching markets.
    async fn find_all(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, RepositoryError>;

    /// One keyset page: the markets matching `filter` strictly after `request.after()` in
    /// `request.sort()` order. Stable under concurrent inserts and equally cheap for every page.
    async fn find_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, RepositoryError>;

    /// Applies the fields set in `patch` (and bumps `updated_at` and `version`) and stores
    /// `jobs`, in one transaction, if the market is still at `expected_version`: the version the
    /// caller checked its rules against. `None` (and no jobs) if there is no such market or it
    /// has changed since; the caller reads it again and re-checks.
    async fn update(
        &self,
        id: MarketId,
        expected_version: u64,
        patch: MarketPatch,
        jobs: &[NewJob],
    ) -> Result<Option<Market>, RepositoryError>;

    /// Deletes the market, if it is still at `expected_version` when one is given, and stores
    /// `audit`, in one transaction; whether it deleted one (if not, `audit` is not stored
    /// either). The version check and the deletion are one statement, so a change committed in
    /// between is never deleted unseen.
    async fn delete(
        &self,
        id: MarketId,
        expected_version: Option<u64>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError>;

    /// Markets whose name or description match the words of `query` (full-text search, the
    /// fallback when semantic search is unavailable), best first, at most `limit`. Scores lie in
    /// `0.0..=1.0`, a match scores above 0, and a name match outranks a description match.
    async fn search_text(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, RepositoryError>;
}

forward_through_arc!(MarketRepository {
    async fn create(&self, market: NewMarket, jobs: &[NewJob]) -> Result<Market, CreateMarketError>;
    async fn create_once(&self, market: NewMarket, jobs: &[NewJob], key: &IdempotencyKey) -> Result<Creation, CreateMarketError>;
    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError>;
    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError>;
    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError>;
    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError>;
    async fn find_all(&self, filter: MarketFilter, sort: MarketSort, page: PageRequest) -> Result<Page<MarketSummary>, RepositoryError>;
    async fn find_after(&self, filter: MarketFilter, request: KeysetRequest) -> Result<KeysetPage<MarketSummary>, RepositoryError>;
    async fn update(&self, id: MarketId, expected_version: u64, patch: MarketPatch, jobs: &[NewJob]) -> Result<Option<Market>, RepositoryError>;
    async fn delete(&self, id: MarketId, expected_version: Option<u64>, audit: Option<&AuditEvent>) -> Result<bool, RepositoryError>;
    async fn search_text(&self, query: &SearchQuery, limit: SearchLimit) -> Result<Vec<ScoredSummary>, RepositoryError>;
});
