//! Markets: their values, lists and paging, the storage port and the service that applies the
//! business rules.

mod model;
mod query;
mod repository;
mod search;
mod service;
mod values;

pub use model::{Creator, Market, MarketDraft, MarketPatch, MarketSummary, NewMarket};
pub use query::{
    KeysetPage, KeysetPosition, KeysetRequest, MarketFilter, MarketSort, Page, PageRequest,
    PageSize, SortField, SortKey,
};
pub use repository::{CreateMarketError, MarketRepository};
pub use search::{ScoredSummary, SearchLimit, SearchMode, SearchQuery, SearchResults};
pub use service::{MarketError, MarketService};
pub use values::{Description, MarketId, MarketName, MarketStatus, Volume};
