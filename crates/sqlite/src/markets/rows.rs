//! Market rows as selected, inserted and updated, and their conversion to domain types.

use diesel::prelude::*;
use markets_domain::RepositoryError;
use markets_domain::market::{
    Creator, Description, Market, MarketName, MarketPatch, MarketStatus, MarketSummary, NewMarket,
    Volume,
};
use markets_domain::user::{DisplayName, UserId};

use crate::error::corrupt;
use crate::schema::markets;
use crate::values::{Micros, SqlId};

/// Every column a single market read needs (not the embedding).
#[derive(Queryable, Selectable)]
#[diesel(table_name = markets, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct MarketRow {
    id: SqlId,
    name: String,
    description: String,
    status: String,
    volume_cents: i64,
    pub(super) creator_id: SqlId,
    created_at: Micros,
    updated_at: Micros,
    version: i64,
}

/// The projection a list reads: no description. Also read by name from the text search's SQL.
#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = markets, check_for_backend(diesel::sqlite::Sqlite))]
pub(super) struct SummaryRow {
    id: SqlId,
    name: String,
    status: String,
    volume_cents: i64,
    pub(super) creator_id: SqlId,
    created_at: Micros,
}

#[derive(Insertable)]
#[diesel(table_name = markets)]
pub(super) struct NewMarketRow<'a> {
    id: SqlId,
    name: &'a str,
    description: &'a str,
    status: &'a str,
    volume_cents: i64,
    creator_id: SqlId,
    created_at: Micros,
    updated_at: Micros,
}

/// The columns a patch sets; `None` fields are left out of the `UPDATE`.
#[derive(AsChangeset)]
#[diesel(table_name = markets)]
pub(super) struct MarketChanges<'a> {
    name: Option<&'a str>,
    description: Option<&'a str>,
    status: Option<&'a str>,
    volume_cents: Option<i64>,
}

impl<'a> NewMarketRow<'a> {
    /// The row for `new`, created at `now`.
    pub(super) fn new(new: &'a NewMarket, now: Micros) -> Self {
        Self {
            id: SqlId(new.id.as_uuid()),
            name: new.name.as_str(),
            description: new.description.as_str(),
            status: new.status.as_str(),
            volume_cents: new.volume.cents(),
            creator_id: SqlId(new.creator_id.as_uuid()),
            created_at: now,
            updated_at: now,
        }
    }
}

impl<'a> From<&'a MarketPatch> for MarketChanges<'a> {
    fn from(patch: &'a MarketPatch) -> Self {
        Self {
            name: patch.name.as_ref().map(MarketName::as_str),
            description: patch.description.as_ref().map(Description::as_str),
            status: patch.status.map(MarketStatus::as_str),
            volume_cents: patch.volume.map(Volume::cents),
        }
    }
}

fn creator(id: SqlId, display_name: &str) -> Result<Creator, RepositoryError> {
    Ok(Creator {
        id: UserId::from(id.0),
        display_name: DisplayName::parse(display_name).map_err(corrupt("users"))?,
    })
}

impl MarketRow {
    /// The domain market, with its creator's display name.
    pub(super) fn into_market(self, creator_name: &str) -> Result<Market, RepositoryError> {
        let invalid = corrupt("markets");
        Ok(Market {
            id: self.id.0.into(),
            name: MarketName::parse(&self.name).map_err(&invalid)?,
            description: Description::parse(&self.description).map_err(&invalid)?,
            status: self.status.parse().map_err(&invalid)?,
            volume: Volume::from_cents(self.volume_cents).map_err(&invalid)?,
            creator: creator(self.creator_id, creator_name)?,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
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
            id: self.id.0.into(),
            name: MarketName::parse(&self.name).map_err(&invalid)?,
            status: self.status.parse().map_err(&invalid)?,
            volume: Volume::from_cents(self.volume_cents).map_err(&invalid)?,
            creator: creator(self.creator_id, creator_name)?,
            created_at: self.created_at.0,
        })
    }
}
