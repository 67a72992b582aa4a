//! Filtering, ordering and keyset predicates for market lists, as boxed diesel queries.

use diesel::prelude::*;
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

/// `query` narrowed to the rows strictly after `position` in `sort` order.
///
/// Written as `key <= ? AND (key < ? OR id < ?)` (mirrored when ascending) rather than a
/// row-value comparison, which diesel can only express as an SQL literal: in its DSL the query
/// has one fixed text per sort, so the connection keeps it prepared. SQLite serves `key <= ?` as
/// a range of the ordering index and checks the rest on the rows it scans (only the ties on
/// `key` are read and skipped).
pub(super) fn after(query: MarketQuery, position: KeysetPosition, sort: MarketSort) -> MarketQuery {
    /// The predicate for one sort column, in one direction.
    macro_rules! beyond {
        ($column:expr, $key:expr) => {{
            let (key, id) = ($key, SqlId(position.id.as_uuid()));
            if sort.descending {
                query.filter($column.le(key).and($column.lt(key).or(markets::id.lt(id))))
            } else {
                query.filter($column.ge(key).and($column.gt(key).or(markets::id.gt(id))))
            }
        }};
    }
    match position.key {
        SortKey::CreatedAt(at) => beyond!(markets::created_at, Micros(at).get()),
        SortKey::Volume(volume) => beyond!(markets::volume_cents, volume.cents()),
    }
}
