//! Market rows as selected, inserted and updated, and their conversion to domain types.

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use markets_domain::RepositoryError;
use markets_domain::market::{
    Creator, Description, Market, MarketName, MarketPatch, MarketStatus, MarketSummary, NewMarket,
};
use markets_domain::user::{DisplayName, UserId};
use uuid::Uuid;

use crate::error::corrupt;
use crate::schema::markets;
use crate::volume::{from_numeric, to_numeric};

/// Every column a single market read needs (not the embedding, not the search document).
#[derive(Queryable, Selectable)]
#[diesel(table_name = markets, check_for_backend(diesel::pg::Pg))]
pub(super) struct MarketRow {
    id: Uuid,
    name: String,
    description: String,
    status: String,
    volume: BigDecimal,
    pub(super) creator_id: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// The projection a list reads: no description.
#[derive(Queryable, Selectable)]
#[diesel(table_name = markets, check_for_backend(diesel::pg::Pg))]
pub(super) struct SummaryRow {
    id: Uuid,
    name: String,
    status: String,
    volume: BigDecimal,
    pub(super) creator_id: Uuid,
    created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = markets)]
pub(super) struct NewMarketRow<'a> {
    id: Uuid,
    name: &'a str,
    description: &'a str,
    status: &'a str,
    volume: BigDecimal,
    creator_id: Uuid,
}

/// The columns a patch sets; `None` fields are left out of the `UPDATE`.
#[derive(AsChangeset)]
#[diesel(table_name = markets)]
pub(super) struct MarketChanges<'a> {
    name: Option<&'a str>,
    description: Option<&'a str>,
    status: Option<&'a str>,
    volume: Option<BigDecimal>,
}

impl<'a> From<&'a NewMarket> for NewMarketRow<'a> {
    fn from(new: &'a NewMarket) -> Self {
        Self {
            id: new.id.as_uuid(),
            name: new.name.as_str(),
            description: new.description.as_str(),
            status: new.status.as_str(),
            volume: to_numeric(new.volume),
            creator_id: new.creator_id.as_uuid(),
        }
    }
}

impl<'a> From<&'a MarketPatch> for MarketChanges<'a> {
    fn from(patch: &'a MarketPatch) -> Self {
        Self {
            name: patch.name.as_ref().map(MarketName::as_str),
            description: patch.description.as_ref().map(Description::as_str),
            status: patch.status.map(MarketStatus::as_str),
            volume: patch.volume.map(to_numeric),
        }
    }
}

fn creator(id: Uuid, display_name: &str) -> Result<Creator, RepositoryError> {
    Ok(Creator {
        id: UserId::from(id),
        display_name: DisplayName::parse(display_name).map_err(corrupt("users"))?,
    })
}

impl MarketRow {
    /// The domain market, with its creator's display name.
    pub(super) fn into_market(self, creator_name: &str) -> Result<Market, RepositoryError> {
        let invalid = corrupt("markets");
        Ok(Market {
            id: self.id.into(),
            name: MarketName::parse(&self.name).map_err(&invalid)?,
            description: Description::parse(&self.description).map_err(&invalid)?,
            status: self.status.parse().map_err(&invalid)?,
            volume: from_numeric(&self.volume).map_err(&invalid)?,
            creator: creator(self.creator_id, creator_name)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: u64::try_from(self.version).map_err(|_| {
                invalid(markets_domain::ValidationError::new(
                    "version",
                    "is negative",
                ))
            })?,
        })
    }
}

impl SummaryRow {
    /// The domain summary, with its creator's display name.
    pub(super) fn into_summary(self, creator_name: &str) -> Result<MarketSummary, RepositoryError> {
        let invalid = corrupt("markets");
        Ok(MarketSummary {
            id: self.id.into(),
            name: MarketName::parse(&self.name).map_err(&invalid)?,
            status: self.status.parse().map_err(&invalid)?,
            volume: from_numeric(&self.volume).map_err(&invalid)?,
            creator: creator(self.creator_id, creator_name)?,
            created_at: self.created_at,
        })
    }
}
