//! [`MarketRepository`] on PostgreSQL.

#[cfg(test)]
mod count_tests;
mod keys;
mod paging;
mod rows;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::AsyncConnection;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::try_join;
use markets_domain::RepositoryError;
use markets_domain::market::{
    CreateMarketError, Creation, IdempotencyKey, KeysetPage, KeysetRequest, Market, MarketFilter,
    MarketId, MarketPatch, MarketRepository, MarketSort, MarketStatus, MarketSummary, NewMarket,
    Page, PageRequest, ScoredSummary, SearchLimit, SearchQuery,
};
use std::collections::HashMap;
use uuid::Uuid;

use self::keys::KeyedFailure;
use self::rows::{MarketChanges, MarketRow, NewMarketRow, SummaryRow};
use crate::audit::record;
use crate::error::from_query;
use crate::fixed::Fixed;
use crate::jobs::enqueue;
use crate::pool::PgPool;
use crate::replicas::ReadRouting;
use crate::schema::{market_counts, markets, users};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use markets_domain::audit::AuditEvent;
use markets_domain::jobs::NewJob;
use markets_domain::user::UserId;

/// Markets in the `markets` table, with creators from `users`. Writes, and the reads that must
/// see the latest write ([`MarketRepository::find_latest`]), go to the primary; lists, search
/// and single-market reads to a replica when [`ReadRouting`] has one.
#[derive(Debug, Clone)]
pub struct PgMarketRepository {
    pool: PgPool,
    reads: ReadRouting,
}

impl PgMarketRepository {
    /// A repository over `pools`: a [`PgPool`] (the primary alone) or a [`ReadRouting`].
    pub fn new(pools: impl Into<ReadRouting>) -> Self {
        let reads = pools.into();
        Self {
            pool: reads.primary().clone(),
            reads,
        }
    }
}

/// The market with this id, with its creator's name: a statically typed query, which the
/// connection keeps prepared (planning would cost more than executing the lookup).
async fn market_by_id(
    conn: &mut AsyncPgConnection,
    id: MarketId,
) -> Result<Option<Market>, RepositoryError> {
    let found = markets::table
        .inner_join(users::table)
        .filter(markets::id.eq(id.as_uuid()))
        .select((MarketRow::as_select(), users::display_name))
        .first::<(MarketRow, String)>(conn)
        .await
        .optional()
        .map_err(from_query)?;
    found
        .map(|(row, creator_name)| row.into_market(&creator_name))
        .transpose()
}

/// Display names of the creators of `rows`, in one `WHERE id = ANY($1)` query: the cure for
/// loading each market's creator separately.
async fn creator_names(
    conn: &mut AsyncPgConnection,
    rows: &[SummaryRow],
) -> Result<HashMap<Uuid, String>, RepositoryError> {
    let mut ids: Vec<Uuid> = rows.iter().map(|row| row.creator_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let names: Vec<(Uuid, String)> = users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::display_name))
        .load(conn)
        .await
        .map_err(from_query)?;
    Ok(names.into_iter().collect())
}

/// How many markets `filter` admits, summed from the `market_counts` rows of the statuses it
/// admits (every shard: at most 48 rows, whatever the table holds) rather than counted. A
/// statically typed query, so the connection keeps it prepared.
async fn matching_total(mut conn: &AsyncPgConnection, filter: MarketFilter) -> QueryResult<i64> {
    let statuses: Vec<&str> = filter
        .statuses()
        .into_iter()
        .map(MarketStatus::as_str)
        .collect();
    let counts: Vec<i64> = market_counts::table
        .filter(market_counts::status.eq_any(statuses))
        .select(market_counts::count)
        .load(&mut conn)
        .await?;
    Ok(counts.iter().sum())
}

/// `rows` as summaries, their creators loaded in one batch.
async fn summaries(
    conn: &mut AsyncPgConnection,
    rows: Vec<SummaryRow>,
) -> Result<Vec<MarketSummary>, RepositoryError> {
    let names = creator_names(conn, &rows).await?;
    rows.into_iter()
        .map(|row| {
            let name = names.get(&row.creator_id).map_or("", String::as_str);
            row.into_summary(name)
        })
        .collect()
}

fn is_foreign_key_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

/// Inserts `market` and its `jobs`; the stored row and its creator's name.
async fn insert(
    conn: &mut AsyncPgConnection,
    market: &NewMarket,
    jobs: &[NewJob],
) -> Result<(MarketRow, String), DieselError> {
    // The jobs go first: if the market then fails, they are rolled back with it.
    enqueue(conn, jobs).await?;
    let row = diesel::insert_into(markets::table)
        .values(NewMarketRow::from(market))
        .returning(MarketRow::as_returning())
        .get_result::<MarketRow>(conn)
        .await?;
    let creator_name = users::table
        .find(market.creator_id.as_uuid())
        .select(users::display_name)
        .first::<String>(conn)
        .await?;
    Ok((row, creator_name))
}

/// The create's error for a failed query: a missing creator, or the store's failure.
fn create_failure(error: DieselError, creator_id: UserId) -> CreateMarketError {
    if is_foreign_key_violation(&error) || error == DieselError::NotFound {
        CreateMarketError::UnknownCreator(creator_id)
    } else {
        from_query(error).into()
    }
}

#[async_trait]
impl MarketRepository for PgMarketRepository {
    async fn create(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
    ) -> Result<Market, CreateMarketError> {
        let mut conn = self.pool.get().await?;
        let stored = conn
            .transaction::<_, DieselError, _>(async |conn| insert(conn, &market, jobs).await)
            .await;
        let (row, creator_name) =
            stored.map_err(|error| create_failure(error, market.creator_id))?;
        Ok(row.into_market(&creator_name)?)
    }

    async fn create_once(
        &self,
        market: NewMarket,
        jobs: &[NewJob],
        key: &IdempotencyKey,
    ) -> Result<Creation, CreateMarketError> {
        let mut conn = self.pool.get().await?;
        let creator_id = market.creator_id;
        let outcome = conn
            .transaction::<_, KeyedFailure, _>(async |conn| {
                keys::lock(conn, creator_id, key).await?;
                if let Some(first) = keys::replay(conn, creator_id, key).await? {
                    return Ok(Creation::Replayed(first));
                }
                let (row, creator_name) = insert(conn, &market, jobs).await?;
                let created = row.into_market(&creator_name).map_err(KeyedFailure::Row)?;
                keys::record(conn, &market, key, &created).await?;
                Ok(Creation::Created(created))
            })
            .await;
        outcome.map_err(|failure| match failure {
            KeyedFailure::Query(error) => create_failure(error, creator_id),
            KeyedFailure::Row(error) => error.into(),
            KeyedFailure::Reused => CreateMarketError::KeyReused,
            KeyedFailure::InFlight => CreateMarketError::KeyInFlight,
        })
    }

    async fn purge_expired_keys(&self) -> Result<u64, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let purged = keys::purge(&mut conn).await.map_err(from_query)?;
        Ok(u64::try_from(purged).unwrap_or_default())
    }

    /// On a replica that has not seen the market (it may have been created a moment ago, by
    /// this caller), asked again of the primary: a caller reads its own creations.
    async fn find_by_id(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        let found = async |conn: &mut AsyncPgConnection| market_by_id(conn, id).await;
        self.reads.read_unless(found, Option::is_none).await
    }

    async fn find_latest(&self, id: MarketId) -> Result<Option<Market>, RepositoryError> {
        let mut conn = self.pool.get().await?;
        market_by_id(&mut conn, id).await
    }

    async fn find_by_ids(&self, ids: &[MarketId]) -> Result<Vec<Market>, RepositoryError> {
        let ids: Vec<Uuid> = ids.iter().map(MarketId::as_uuid).collect();
        let found = async |conn: &mut AsyncPgConnection| {
            markets::table
                .inner_join(users::table)
                .filter(markets::id.eq_any(&ids))
                .select((MarketRow::as_select(), users::display_name))
                .load::<(MarketRow, String)>(conn)
                .await
                .map_err(from_query)?
                .into_iter()
                .map(|(row, creator_name)| row.into_market(&creator_name))
                .collect()
        };
        self.reads.read(found).await
    }

    async fn find_all(
        &self,
        filter: MarketFilter,
        sort: MarketSort,
        page: PageRequest,
    ) -> Result<Page<MarketSummary>, RepositoryError> {
        let listed = async |pooled: &mut AsyncPgConnection| {
            let (total, rows) = {
                let mut conn: &AsyncPgConnection = pooled;
                let count = matching_total(conn, filter);
                let rows = paging::offset_page(filter, sort, page)
                    .select(SummaryRow::as_select())
                    .load::<SummaryRow>(&mut conn);
                try_join!(count, rows).map_err(from_query)?
            };
            Ok(Page {
                items: summaries(pooled, rows).await?,
                request: page,
                total: u64::try_from(total).unwrap_or_default(),
            })
        };
        self.reads.read(listed).await
    }

    async fn find_after(
        &self,
        filter: MarketFilter,
        request: KeysetRequest,
    ) -> Result<KeysetPage<MarketSummary>, RepositoryError> {
        let listed = async |conn: &mut AsyncPgConnection| {
            let sort = request.sort();
            let mut query = paging::ordered(paging::filtered(filter), sort);
            if let Some(position) = request.after() {
                query = paging::after(query, position, sort);
            }
            let rows = query
                .select(SummaryRow::as_select())
                .limit(i64::from(request.limit().get()) + 1)
                .load::<SummaryRow>(conn)
                .await
                .map_err(from_query)?;
            let items = summaries(conn, rows).await?;
            Ok(KeysetPage::from_lookahead(items, &request))
        };
        self.reads.read(listed).await
    }

    async fn update(
        &self,
        id: MarketId,
        expected_version: u64,
        patch: MarketPatch,
        jobs: &[NewJob],
    ) -> Result<Option<Market>, RepositoryError> {
        let expected_version = i64::try_from(expected_version).unwrap_or(i64::MAX);
        let mut conn = self.pool.get().await?;
        let updated = conn
            .transaction::<_, DieselError, _>(async |conn| {
                let at_version = markets::table
                    .find(id.as_uuid())
                    .filter(markets::version.eq(expected_version));
                let Some(row) = diesel::update(at_version)
                    .set((
                        MarketChanges::from(&patch),
                        markets::updated_at.eq(diesel::dsl::now),
                        markets::version.eq(markets::version + 1),
                    ))
                    .returning(MarketRow::as_returning())
                    .get_result::<MarketRow>(conn)
                    .await
                    .optional()?
                else {
                    return Ok(None);
                };
                enqueue(conn, jobs).await?;
                let creator_name = users::table
                    .find(row.creator_id)
                    .select(users::display_name)
                    .first::<String>(conn)
                    .await?;
                Ok(Some((row, creator_name)))
            })
            .await
            .map_err(from_query)?;
        updated
            .map(|(row, creator_name)| row.into_market(&creator_name))
            .transpose()
    }

    async fn search_text(
        &self,
        query: &SearchQuery,
        limit: SearchLimit,
    ) -> Result<Vec<ScoredSummary>, RepositoryError> {
        let matched = async |conn: &mut AsyncPgConnection| {
            // Literals of one fixed text (the query string is bound), so kept prepared.
            let ranked = paging::matching(query.as_str())
                .select((SummaryRow::as_select(), paging::text_rank(query.as_str())))
                .order_by((paging::text_rank(query.as_str()).desc(), markets::id.asc()))
                .limit(i64::from(limit.get()));
            let rows: Vec<(SummaryRow, f32)> =
                Fixed(ranked).load(conn).await.map_err(from_query)?;
            let (rows, scores): (Vec<SummaryRow>, Vec<f32>) = rows.into_iter().unzip();
            Ok((summaries(conn, rows).await?, scores))
        };
        let (hits, scores) = self.reads.read(matched).await?;
        Ok(hits
            .into_iter()
            .zip(scores)
            .map(|(market, score)| ScoredSummary {
                market,
                score: score.clamp(0.0, 1.0),
            })
            .collect())
    }

    async fn delete(
        &self,
        id: MarketId,
        expected_version: Option<u64>,
        audit: Option<&AuditEvent>,
    ) -> Result<bool, RepositoryError> {
        let expected_version =
            expected_version.map(|version| i64::try_from(version).unwrap_or(i64::MAX));
        let mut conn = self.pool.get().await?;
        let deleted = conn
            .transaction::<_, DieselError, _>(async |conn| {
                let mut delete = diesel::delete(markets::table.find(id.as_uuid())).into_boxed();
                if let Some(version) = expected_version {
                    delete = delete.filter(markets::version.eq(version));
                }
                let deleted = delete.execute(conn).await?;
                if let (1.., Some(event)) = (deleted, audit) {
                    record(conn, event).await?;
                }
                Ok(deleted)
            })
            .await
            .map_err(from_query)?;
        Ok(deleted > 0)
    }
}

#[cfg(test)]
mod tests {
    //! Query plans: the list queries this module builds are served by the indexes.

    use super::*;
    use crate::testing::TestDatabase;
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel_async::SimpleAsyncConnection;
    use markets_domain::market::{KeysetPosition, MarketStatus, SortField, SortKey, Volume};

    /// `EXPLAIN <query>`, with the query's own binds.
    #[derive(QueryId)]
    struct Explain<Q>(Q);

    impl<Q> Query for Explain<Q> {
        type SqlType = diesel::sql_types::Text;
    }

    impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            out.push_sql("EXPLAIN ");
            self.0.walk_ast(out.reborrow())
        }
    }

    async fn plan(conn: &mut AsyncPgConnection, query: paging::MarketQuery) -> String {
        let query = query.select(SummaryRow::as_select()).limit(21);
        let lines: Vec<String> = Explain(query).load(conn).await.unwrap();
        lines.join("\n")
    }

    fn assert_index_only_plan(plan: &str, index: &str) {
        assert!(
            plan.contains(&format!("Index Scan using {index}"))
                || plan.contains(&format!("Index Scan Backward using {index}")),
            "expected {index}: {plan}"
        );
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Sort"),
            "full scan or sort: {plan}"
        );
    }

    #[tokio::test]
    async fn filtered_sorted_pages_use_an_index() {
        let db = TestDatabase::new().await;
        let mut conn = db.pool().get().await.unwrap();
        conn.batch_execute(
            "INSERT INTO users (id, email, display_name, password_hash) \
               VALUES ('00000000-0000-7000-8000-000000000001', 'a@example.com', 'A', 'x');
             INSERT INTO markets (id, name, description, status, volume, creator_id, created_at)
               SELECT gen_random_uuid(), 'm' || n, '', CASE WHEN n % 100 = 0 THEN 'resolved' ELSE (ARRAY['open','closed'])[n % 2 + 1] END,
                      n % 1000, '00000000-0000-7000-8000-000000000001', now() - n * interval '1 s'
               FROM generate_series(1, 20000) AS n;
             ANALYZE markets;",
        )
        .await
        .unwrap();
        // A common status may be served by the plain ordering index with a filter, a rare one
        // by the (status, key, id) index; neither may read the whole table and sort it.
        for (status, sort, index) in [
            (MarketStatus::Open, "-created_at", "markets_"),
            (MarketStatus::Open, "volume", "markets_"),
            (
                MarketStatus::Resolved,
                "-created_at",
                "markets_status_created_at_idx",
            ),
            (
                MarketStatus::Resolved,
                "volume",
                "markets_status_volume_idx",
            ),
        ] {
            let filter = MarketFilter {
                status: Some(status),
            };
            let sort: MarketSort = sort.parse().unwrap();
            let first = plan(&mut conn, paging::ordered(paging::filtered(filter), sort)).await;
            println!("EXPLAIN first page, status={status}, sort={sort}:\n{first}\n");
            assert_index_only_plan(&first, index);

            let key = match sort.field {
                SortField::CreatedAt => SortKey::CreatedAt(chrono::Utc::now()),
                SortField::Volume => SortKey::Volume(Volume::from_cents(50_000).unwrap()),
            };
            let position = KeysetPosition {
                key,
                id: MarketId::new(),
            };
            let ordered = paging::ordered(paging::filtered(filter), sort);
            let later = plan(&mut conn, paging::after(ordered, position, sort)).await;
            println!("EXPLAIN keyset page, status={status}, sort={sort}:\n{later}\n");
            assert_index_only_plan(&later, index);
        }
        conn.batch_execute("VACUUM markets").await.unwrap();
        let deep = PageRequest::new(400, markets_domain::market::PageSize::DEFAULT).unwrap();
        let offset_page = plan(
            &mut conn,
            paging::offset_page(MarketFilter::default(), MarketSort::default(), deep),
        )
        .await;
        println!("EXPLAIN offset page 400, sort=-created_at:\n{offset_page}\n");
        assert!(
            offset_page.contains("Index Only Scan using markets_created_at_idx"),
            "{offset_page}"
        );
        assert!(!offset_page.contains("Seq Scan"), "{offset_page}");
    }
}
