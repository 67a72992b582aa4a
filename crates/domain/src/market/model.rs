//! Market entities and the inputs that create and change them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::values::{Description, MarketId, MarketName, MarketStatus, Volume};
use crate::user::{DisplayName, UserId};

/// Who created a market, as shown beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// The creator's user id.
    pub id: UserId,
    /// The creator's display name.
    pub display_name: DisplayName,
}

/// A market with everything about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Market {
    /// The market's id.
    pub id: MarketId,
    /// Its name.
    pub name: MarketName,
    /// Its description.
    pub description: Description,
    /// Where it is in its life.
    pub status: MarketStatus,
    /// Volume traded.
    pub volume: Volume,
    /// Who created it.
    pub creator: Creator,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one with every change: caches compare it to never replace a
    /// newer value with an older one.
    pub version: u64,
}

/// The columns a list shows: a market without its description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSummary {
    /// The market's id.
    pub id: MarketId,
    /// Its name.
    pub name: MarketName,
    /// Where it is in its life.
    pub status: MarketStatus,
    /// Volume traded.
    pub volume: Volume,
    /// Who created it.
    pub creator: Creator,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<Market> for MarketSummary {
    fn from(market: Market) -> Self {
        Self {
            id: market.id,
            name: market.name,
            status: market.status,
            volume: market.volume,
            creator: market.creator,
            created_at: market.created_at,
        }
    }
}

/// Everything needed to store a new market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMarket {
    /// The id to give it.
    pub id: MarketId,
    /// Its creator, who must exist.
    pub creator_id: UserId,
    /// Its name.
    pub name: MarketName,
    /// Its description.
    pub description: Description,
    /// Its initial status.
    pub status: MarketStatus,
    /// Its initial volume.
    pub volume: Volume,
}

/// A partial update: only the fields that are `Some` change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarketPatch {
    /// A new name.
    pub name: Option<MarketName>,
    /// A new description.
    pub description: Option<Description>,
    /// A new status.
    pub status: Option<MarketStatus>,
    /// A new volume.
    pub volume: Option<Volume>,
}

impl MarketPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// What a conditional change requires of the market's current version: nothing, or one of
/// the versions the caller names (HTTP's `If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Any version will do.
    #[default]
    Any,
    /// The market must be at one of these versions (none: never).
    Versions(Vec<u64>),
}

impl Precondition {
    /// Whether a market at `version` meets the condition.
    pub fn allows(&self, version: u64) -> bool {
        match self {
            Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }
}

/// What a caller supplies to create a market; the service adds the id and the creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketDraft {
    /// Its name.
    pub name: MarketName,
    /// Its description.
    pub description: Description,
    /// Its initial status (the contract's default is [`MarketStatus::Open`]).
    pub status: MarketStatus,
    /// Its initial volume (the contract's default is [`Volume::ZERO`]).
    pub volume: Volume,
}
