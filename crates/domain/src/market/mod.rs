//! Markets: their values, lists and paging, the storage port and the service that applies the
//! business rules.

mod idempotency;
mod model;
mod query;
mod repository;
mod search;
mod service;
mod values;

/// Offset paging lives in [`crate::paging`]; re-exported where lists of markets use it.
pub use crate::paging::{Page, PageRequest, PageSize};
pub use idempotency::{Creation, IdempotencyKey};
pub use model::{
    Creator, Market, MarketDraft, MarketPatch, MarketSummary, NewMarket, Precondition,
};
pub use query::{
    KeysetPage, KeysetPosition, KeysetRequest, MarketFilter, MarketSort, SortField, SortKey,
};
pub use repository::{CreateMarketError, MarketRepository};
pub use search::{ScoredSummary, SearchLimit, SearchMode, SearchQuery, SearchResults};
pub use service::{MarketError, MarketService};
pub use values::{Description, MarketId, MarketName, MarketStatus, Volume};
