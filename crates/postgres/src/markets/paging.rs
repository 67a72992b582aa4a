//! Filtering, ordering and keyset predicates for market lists, as boxed diesel queries.

use diesel::dsl::{AsExprOf, sql};
use diesel::expression::{SqlLiteral, UncheckedBind};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Float, Text};
use markets_domain::market::{
    KeysetPosition, MarketFilter, MarketSort, PageRequest, SortField, SortKey,
};

use crate::schema::markets;
use crate::volume::to_numeric;

/// A market query whose shape is decided at run time.
pub(super) type MarketQuery = markets::BoxedQuery<'static, Pg>;

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
        (SortField::Volume, true) => query.order_by((markets::volume.desc(), markets::id.desc())),
        (SortField::Volume, false) => query.order_by((markets::volume.asc(), markets::id.asc())),
    }
}

/// One offset page of `filter`'s markets in `sort` order, as a deferred join: the offset is
/// skipped in an index-only scan of the ordering index (which holds the ids), and only the
/// page's own rows are read from the table.
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
/// Written as `key <= $1 AND (key < $1 OR id < $2)` (mirrored when ascending) rather than a
/// row-value comparison, which diesel can only express as an SQL literal: in its DSL the query
/// has one fixed text per sort, so the connection keeps it prepared. PostgreSQL reads
/// `key <= $1` as the range of the ordering index and checks the rest on the rows it scans
/// (only the ties on `key` are read and skipped).
pub(super) fn after(query: MarketQuery, position: KeysetPosition, sort: MarketSort) -> MarketQuery {
    /// The predicate for one sort column, in one direction.
    macro_rules! beyond {
        ($column:expr, $key:expr) => {{
            let (key, id) = ($key, position.id.as_uuid());
            if sort.descending {
                query.filter(
                    $column
                        .le(key.clone())
                        .and($column.lt(key).or(markets::id.lt(id))),
                )
            } else {
                query.filter(
                    $column
                        .ge(key.clone())
                        .and($column.gt(key).or(markets::id.gt(id))),
                )
            }
        }};
    }
    match position.key {
        SortKey::CreatedAt(at) => beyond!(markets::created_at, at),
        SortKey::Volume(volume) => beyond!(markets::volume, to_numeric(volume)),
    }
}

/// The markets whose search document matches `query`, read as web-search syntax (quoted
/// phrases, `or`, `-word`) so that no user input is a syntax error.
pub(super) fn matching(query: &str) -> MarketQuery {
    markets::table
        .filter(
            sql::<Bool>("markets.search_document @@ websearch_to_tsquery('english', ")
                .bind::<Text, _>(query.to_owned())
                .sql(")"),
        )
        .into_boxed()
}

/// A `ts_rank(...)` expression with its bound query.
pub(super) type TextRank =
    SqlLiteral<Float, UncheckedBind<SqlLiteral<Float>, AsExprOf<String, Text>>>;

/// How well a market matches `query`: `ts_rank` with normalisation 32 (`rank / (rank + 1)`),
/// so scores lie in `0..1`; the name (weight A) counts more than the description (B).
pub(super) fn text_rank(query: &str) -> TextRank {
    sql::<Float>("ts_rank(markets.search_document, websearch_to_tsquery('english', ")
        .bind::<Text, _>(query.to_owned())
        .sql("), 32)")
}
