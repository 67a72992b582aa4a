//! [`MarketRepository`] on SQLite.

#[cfg(test)]
mod count_tests;
mod keys;
mod paging;
mod rows;
mod text;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Double, Text};
use markets_domain::RepositoryError;
use markets_domain::audit::AuditEvent;
use markets_domain::jobs::NewJob;
use markets_domain::market::{
    CreateMarketError, Creation, IdempotencyKey, KeysetPage, KeysetRequest, Market, MarketFilter,
    MarketId, MarketPatch, MarketRepository, MarketSort, MarketSummary, NewMarket, Page,
    PageRequest, ScoredSummary, SearchLimit, SearchQuery,
};
use markets_domain::user::UserId;
use std::collections::HashMap;
use uuid::Uuid;

use self::keys::KeyedFailure;
use self::rows::{MarketChanges, MarketRow, NewMarketRow, SummaryRow};
use crate::audit::record;
use crate::error::from_query;
use crate::jobs::enqueue;
use crate::pool::SqlitePool;
use crate::schema::{market_counts, markets, users};
use crate::values::{Micros, SqlId};

/// Markets in the `markets` table, with creators from `users`.
#[derive(Debug, Clone)]
pub struct SqliteMarketRepository {
    pool: SqlitePool,
}

impl SqliteMarketRepository {
    /// A repository over `pool`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

/// Display names of the creators of `rows`, in one `WHERE id IN (...)` query: the cure for
/// loading each market's creator separately.
fn creator_names(
    conn: &mut SqliteConnection,
    rows: &[SummaryRow],
) -> QueryResult<HashMap<Uuid, String>> {
    let mut ids: Vec<Uuid> = rows.iter().map(|row| row.creator_id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let names: Vec<(SqlId, String)> = users::table
        .filter(users::id.eq_any(ids.into_iter().map(SqlId).collect::<Vec<_>>()))
        .select((users::id, users::display_name))
        .load(conn)?;
    Ok(names.into_iter().map(|(id, name)| (id.0, name)).collect())
}

/// `rows` with their creators' names, loaded in one batch.
fn with_creators(
    conn: &mut SqliteConnection,
    rows: Vec<SummaryRow>,
) -> QueryResult<Vec<(SummaryRow, String)>> {
    let names = creator_names(conn, &rows)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let name = names.get(&row.creator_id.0).cloned().unwrap_or_default();
            (row, name)
        })
        .collect())
}

fn summaries(rows: Vec<(SummaryRow, String)>) -> Result<Vec<MarketSummary>, RepositoryError> {
    rows.into_iter()
        .map(|(row, name)| row.into_summary(&name))
        .collect()
}

/// How many markets `filter` admits, summed from the `market_counts` rows of the statuses it
/// admits (at most three, whatever the table holds) rather than counted. As
/// `status = ? OR status = ? ...` (one text per number of statuses), which the connection keeps
/// prepared; SQLite's `IN (?, ?, ...)` has a bind per value, which diesel never caches.
fn matching_total(conn: &mut SqliteConnection, filter: MarketFilter) -> QueryResult<i64> {
    let counts = filter.statuses().into_iter().fold(
        market_counts::table
            .select(market_counts::count)
            .into_boxed(),
        |query, status| query.or_filter(market_counts::status.eq(status.as_str())),
    );
    let counts: Vec<i64> = counts.load(conn)?;
    Ok(counts.iter().sum())
}

/// The creator's display name, read in the writing transaction.
fn creator_name(conn: &mut SqliteConnection, creator_id: SqlId) -> QueryResult<String> {
    users::table
        .find(creator_id)
        .select(users::display_name)
        .first(conn)
}

/// A market summary with its bm25 rank, as the text search selects it.
#[derive(QueryableByName)]
struct RankedRow {
    #[diesel(embed)]
    summary: SummaryRow,
    #[diesel(sql_type = Double)]
    rank: f64,
}

/// Matches in bm25 order (name weighted above description), ties broken by id.
const SEARCH: &str = "SELECT markets.id, markets.name, markets.status, markets.volume_cents, \
         markets.creator_id, markets.created_at, bm25(markets_search, ?, ?) AS rank \
     FROM markets_search JOIN markets ON markets.row_id = markets_search.rowid \
     WHERE markets_search MATCH ? \
     ORDER BY rank, markets.id \
     LIMIT ?";

/// Inserts `market` and its `jobs` at `now`; the stored row and its creator's name.
fn insert(
    conn: &mut SqliteConnection,
    market: &NewMarket,
    jobs: &[NewJob],
    now: Micros,
) -> QueryResult<(MarketRow, String)> {
    // The jobs go first: if the market then fails, they are rolled back with it.
    enqueue(conn, jobs, now)?;
    let row = diesel::insert_into(markets::table)
        .values(NewMarketRow::new(market, now))
        .returning(MarketRow::as_returning())
        .get_result::<MarketRow>(conn)?;
    let name = creator_name(conn, row.creator_id)?;
    Ok((row, name))
}

/// The create's error for a failed query: a missing creator, or the store's failure.
fn create_failure(error: DieselError, creator_id: UserId) -> CreateMarketError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
        | DieselError::NotFound => CreateMarketError::UnknownCreator(creator_id),
        other => from_query(other).into(),
    }
}

#[async_trait]
impl MarketRepository for SqliteMarketRepository {
    async fn create(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
    ) -> Result<Market, CreateMarketError> {
        let creator_id = market.creator_id;
        let jobs = jobs.to_vec();
        let stored = self
            .pool
            .write(move |conn| {
                // IMMEDIATE: take the write lock up front (waiting up to busy_timeout), rather
                // than fail when a read transaction tries to become a write transaction.
                conn.immediate_transaction(|conn| insert(conn, &market, &jobs, Micros::now()))
            })
            .await?;
        let (row, creator_name) = stored.map_err(|error| create_failure(error, creator_id))?;
        Ok(row.into_market(&creator_name)?)
    }

    async fn create_once(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
        key: &IdempotencyKey,
    ) -> Result<Creation, CreateMarketError> {
        let creator_id = market.creator_id;
        let jobs = jobs.to_vec();
        let key = key.clone();
        let outcome = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction::<_, KeyedFailure, _>(|conn| {
                    let now = Micros::now();
                    if let Some(first) = keys::replay(conn, &market, &key, now)? {
                        return Ok(Creation::Replayed(first));
                    }
                    let (row, creator_name) = insert(conn, &market, &jobs, now)?;
                    let created = row.into_market(&creator_name).map_err(KeyedFailure::Row)?;
                    keys::record(conn, &market, &key, &created, now)?;
                    Ok(Creation::Created(created))
                })
            })
            .await?;
        outcome.map_err(|failure| match failure {
            KeyedFailure::Query(error) => create_failure(error, creator_id),
            KeyedFailure::Row(error) => error.into(),
            KeyedFailure::Reused => CreateMarketError::KeyReused,
        })
    }

    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError> {
        let purged = self
            .pool
            .write(|conn| keys::purge(conn, Micros::now()))
            .await?
            .map_err(from_query)?;
        Ok(u64::try_from(purged).unwrap_or_default())
    }

    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        let found = self
            .pool
            .run(move |conn| {
                markets::table
                    .inner_join(users::table)
                    .filter(markets::id.eq(SqlId(id.as_uuid())))
                    .select((MarketRow::as_select(), users::display_name))
                    .first::<(MarketRow, String)>(conn)
                    .optional()
            })
            .await?
            .map_err(from_query)?;
        found
            .map(|(row, creator_name)| row.into_market(&creator_name))
            .transpose()
    }

    /// One file, no replicas: the latest write is what every read sees.
    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        self.find_by_id(id).await
    }

    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError> {
        let ids: Vec<SqlId> = ids.iter().map(|id| SqlId(id.as_uuid())).collect();
        self.pool
            .run(move |conn| {
                markets::table
                    .inner_join(users::table)
                    .filter(markets::id.eq_any(ids))
                    .select((MarketRow::as_select(), users::display_name))
                    .load::<(MarketRow, String)>(conn)
            })
            .await?
            .map_err(from_query)?
            .into_iter()
            .map(|(row, creator_name)| row.into_market(&creator_name))
            .collect()
    }

    async fn find_all(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, RepositoryError> {
        let (total, rows) = self
            .pool
            .run(move |conn| {
                // One read transaction: the total and the page come from the same snapshot.
                conn.transaction(|conn| {
                    let total = matching_total(conn, filter)?;
                    let rows = paging::offset_page(filter, sort, page)
                        .select(SummaryRow::as_select())
                        .load::<SummaryRow>(conn)?;
                    Ok::<_, DieselError>((total, with_creators(conn, rows)?))
                })
            })
            .await?
            .map_err(from_query)?;
        Ok(Page {
            items: summaries(rows)?,
            request: page,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn find_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, RepositoryError> {
        let sort = request.sort();
        let mut query = paging::ordered(paging::filtered(filter), sort);
        if let Some(position) = request.after() {
            query = paging::after(query, position, sort);
        }
        let limit = i64::from(request.limit().get()) + 1;
        let rows = self
            .pool
            .run(move |conn| {
                conn.transaction(|conn| {
                    let rows = query
                        .select(SummaryRow::as_select())
                        .limit(limit)
                        .load::<SummaryRow>(conn)?;
                    with_creators(conn, rows)
                })
            })
            .await?
            .map_err(from_query)?;
        Ok(KeysetPage::from_lookahead(summaries(rows)?, &request))
    }

    async fn update(
        &self,
        id: MarketId,
        expected_version: u64,
        patch: MarketPatch,
        jobs: &[NewJob],
    ) -> Result<Option<Market>, RepositoryError> {
        let expected_version = i64::try_from(expected_version).unwrap_or(i64::MAX);
        let jobs = jobs.to_vec();
        let updated = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let now = Micros::now();
                    let at_version = markets::table
                        .filter(markets::id.eq(SqlId(id.as_uuid())))
                        .filter(markets::version.eq(expected_version));
                    let Some(row) = diesel::update(at_version)
                        .set((
                            MarketChanges::from(&patch),
                            markets::updated_at.eq(now),
                            markets::version.eq(markets::version + 1),
                        ))
                        .returning(MarketRow::as_returning())
                        .get_result::<MarketRow>(conn)
                        .optional()?
                    else {
                        return Ok(None);
                    };
                    enqueue(conn, &jobs, now)?;
                    let name = creator_name(conn, row.creator_id)?;
                    Ok::<_, DieselError>(Some((row, name)))
                })
            })
            .await?
            .map_err(from_query)?;
        updated
            .map(|(row, creator_name)| row.into_market(&creator_name))
            .transpose()
    }

    async fn delete(
        &self,
        id: MarketId,
        expected_version: Option<u64>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError> {
        // The FTS entry and the embedding go with the row (trigger, ON DELETE CASCADE).
        let audit = audit.cloned();
        let expected_version =
            expected_version.map(|version| i64::try_from(version).unwrap_or(i64::MAX));
        let deleted = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let mut delete =
                        diesel::delete(markets::table.filter(markets::id.eq(SqlId(id.as_uuid()))))
                            .into_boxed();
                    if let Some(version) = expected_version {
                        delete = delete.filter(markets::version.eq(version));
                    }
                    let deleted = delete.execute(conn)?;
                    if let (1.., Some(event)) = (deleted, &audit) {
                        record(conn, event)?;
                    }
                    Ok::<_, DieselError>(deleted)
                })
            })
            .await?
            .map_err(from_query)?;
        Ok(deleted > 0)
    }

    /// FTS5 with bm25 (name weighted ten times the description), mapped into `0..1`.
    async fn search_text(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, RepositoryError> {
        let Some(expression) = text::match_expression(query.as_str()) else {
            return Ok(Vec::new());
        };
        let limit = i64::from(limit.get());
        let rows = self
            .pool
            .run(move |conn| {
                conn.transaction(|conn| {
                    let ranked = diesel::sql_query(SEARCH)
                        .bind::<Double, _>(text::NAME_WEIGHT)
                        .bind::<Double, _>(text::DESCRIPTION_WEIGHT)
                        .bind::<Text, _>(expression)
                        .bind::<BigInt, _>(limit)
                        .load::<RankedRow>(conn)?;
                    let (rows, ranks): (Vec<SummaryRow>, Vec<f64>) = ranked
                        .into_iter()
                        .map(|row| (row.summary, row.rank))
                        .unzip();
                    Ok::<_, DieselError>((with_creators(conn, rows)?, ranks))
                })
            })
            .await?
            .map_err(from_query)?;
        let (rows, ranks) = rows;
        Ok(summaries(rows)?
            .into_iter()
            .zip(ranks)
            .map(|(market, rank)| ScoredSummary {
                market,
                score: text::score(rank),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    //! Query plans: the list queries this module builds are served by the indexes.

    use super::*;
    use crate::testing::TestDatabase;
    use diesel::connection::SimpleConnection;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use markets_domain::market::{KeysetPosition, MarketStatus, SortField, SortKey, Volume};

    /// `EXPLAIN QUERY PLAN <query>`, with the query's own binds.
    #[derive(QueryId)]
    struct Explain<Q>(Q);

    impl<Q> Query for Explain<Q> {
        type SqlType = (
            diesel::sql_types::Integer,
            diesel::sql_types::Integer,
            diesel::sql_types::Integer,
            diesel::sql_types::Text,
        );
    }

    impl<Q: QueryFragment<diesel::sqlite::Sqlite>> QueryFragment<diesel::sqlite::Sqlite>
        for Explain<Q>
    {
        fn walk_ast<'b>(
            &'b self,
            mut out: AstPass<'_, 'b, diesel::sqlite::Sqlite>,
        ) -> QueryResult<()> {
            out.push_sql("EXPLAIN QUERY PLAN ");
            self.0.walk_ast(out.reborrow())
        }
    }

    impl<Q> diesel::query_dsl::RunQueryDsl<SqliteConnection> for Explain<Q> {}

    fn plan(conn: &mut SqliteConnection, query: paging::MarketQuery) -> String {
        let query = query.select(SummaryRow::as_select()).limit(21);
        let lines: Vec<(i32, i32, i32, String)> = Explain(query).load(conn).unwrap();
        lines
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn filtered_sorted_pages_use_an_index() {
        let db = TestDatabase::new().await;
        let plans = db
            .pool()
            .write(|conn| {
                conn.batch_execute(
                    "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at) \
                       VALUES (zeroblob(16), 'a@example.com', 'A', 'x', 0, 0);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
                     INSERT INTO markets (id, name, description, status, volume_cents, creator_id, created_at, updated_at)
                       SELECT randomblob(16), 'm' || i, '',
                              CASE WHEN i % 100 = 0 THEN 'resolved' WHEN i % 2 = 0 THEN 'open' ELSE 'closed' END,
                              (i % 1000) * 100, zeroblob(16), i * 1000000, i * 1000000
                       FROM n;
                     ANALYZE;",
                )
                .unwrap();
                let mut plans = Vec::new();
                for (status, sort) in [
                    (None, "-created_at"),
                    (None, "volume"),
                    (Some(MarketStatus::Open), "-created_at"),
                    (Some(MarketStatus::Resolved), "volume"),
                ] {
                    let filter = MarketFilter { status };
                    let sort: MarketSort = sort.parse().unwrap();
                    let first = plan(conn, paging::ordered(paging::filtered(filter), sort));
                    let key = match sort.field {
                        SortField::CreatedAt => SortKey::CreatedAt(chrono::Utc::now()),
                        SortField::Volume => SortKey::Volume(Volume::from_cents(50_000).unwrap()),
                    };
                    let position = KeysetPosition {
                        key,
                        id: MarketId::new(),
                    };
                    let ordered = paging::ordered(paging::filtered(filter), sort);
                    let later = plan(conn, paging::after(ordered, position, sort));
                    plans.push((format!("{status:?} {sort}"), first, later));
                }
                let deep = PageRequest::new(400, markets_domain::market::PageSize::DEFAULT).unwrap();
                let offset = plan(
                    conn,
                    paging::offset_page(MarketFilter::default(), MarketSort::default(), deep),
                );
                (plans, offset)
            })
            .await
            .unwrap();
        let (plans, offset) = plans;
        for (case, first, later) in plans {
            println!("{case}, first page:\n{first}\n{case}, keyset page:\n{later}\n");
            for plan in [&first, &later] {
                assert!(plan.contains("USING INDEX markets_"), "{case}: {plan}");
                assert!(!plan.contains("TEMP B-TREE"), "{case} sorts: {plan}");
            }
            // A range on the sort key (`key <= ?` or `key >= ?`: the plan prints both as `<`
            // or `>`); the ties are checked on the rows it reads.
            assert!(
                later.starts_with("SEARCH") && (later.contains("<?)") || later.contains(">?)")),
                "{case}: keyset is not an index range: {later}"
            );
        }
        println!("offset page 400:\n{offset}");
        assert!(
            offset.contains("USING COVERING INDEX markets_created_at_idx"),
            "{offset}"
        );
    }
}
