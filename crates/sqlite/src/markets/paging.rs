//! Filtering, ordering and keyset predicates for market lists, as boxed diesel queries.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool};
use diesel::sqlite::Sqlite;
use markets_domain::market::{
    KeysetPosition, MarketFilter, MarketSort, PageRequest, SortField, SortKey,
};

use crate::schema::markets;
use crate::values::{Micros, SqlId};

/// A market query whose shape is decided at run time.
pub(super) type MarketQuery = markets::BoxedQuery<'static, Sqlite>;

/// The markets `filter` admits.
pub(super) fn filtered(filter: MarketFilter) -> MarketQuery {
    match filter.status {
        Some(status) => markets::table
            .filter(markets::status.eq(status.as_str()))
            .into_boxed(),
        None => markets::table.into_boxed(),
    }
}

/// `query` in `sort` order, ties broken by id in the same direction, so that the order is total
/// and matches the `(key DESC, id DESC)` indexes (scanned backwards when ascending).
pub(super) fn ordered(query: MarketQuery, sort: MarketSort) -> MarketQuery {
    match (sort.field, sort.descending) {
        (SortField::CreatedAt, true) => {
            query.order_by((markets::created_at.desc(), markets::id.desc()))
        }
        (SortField::CreatedAt, false) => {
            query.order_by((markets::created_at.asc(), markets::id.asc()))
        }
        (SortField::Volume, true) => {
            query.order_by((markets::volume_cents.desc(), markets::id.desc()))
        }
        (SortField::Volume, false) => {
            query.order_by((markets::volume_cents.asc(), markets::id.asc()))
        }
    }
}

/// One offset page of `filter`'s markets in `sort` order, as a deferred join: the offset is
/// skipped in the ordering index (which holds the ids: a covering scan), and only the page's
/// own rows are read from the table.
pub(super) fn offset_page(
    filter: MarketFilter,
    sort: MarketSort,
    page: PageRequest,
) -> MarketQuery {
    let page_ids = ordered(filtered(filter), sort)
        .select(markets::id)
        .limit(i64::from(page.size().get()))
        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX));
    ordered(markets::table.into_boxed(), sort).filter(markets::id.eq_any(page_ids))
}

/// The rows strictly after `position` in `sort` order, as one row-value comparison
/// (`(key, id) < (?, ?)`), which SQLite serves as a range of the ordering index.
pub(super) fn after(query: MarketQuery, position: KeysetPosition, sort: MarketSort) -> MarketQuery {
    let operator = if sort.descending { "<" } else { ">" };
    let id = SqlId(position.id.as_uuid());
    let (column, key) = match position.key {
        SortKey::CreatedAt(at) => ("created_at", Micros(at).get()),
        SortKey::Volume(volume) => ("volume_cents", volume.cents()),
    };
    query.filter(
        sql::<Bool>(&format!("(markets.{column}, markets.id) {operator} ("))
            .bind::<BigInt, _>(key)
            .sql(", ")
            .bind::<Binary, _>(id)
            .sql(")"),
    )
}
