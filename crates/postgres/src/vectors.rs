//! [`VectorIndex`] on pgvector: embeddings in `markets.embedding` (an HNSW index with cosine
//! distance serves the nearest-neighbour query), staleness in `markets.embedding_stale`, and
//! the claims of indexing runners in `markets.index_claim` / `index_claimed_until`.
//!
//! The `vector` type is mapped by hand (its binary form is a dimension count, a reserved word,
//! then big-endian `f32`s) so the binary does not link libpq for the `pgvector` crate.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::result::QueryResult;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Float, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use markets_domain::RepositoryError;
use markets_domain::market::MarketId;
use markets_domain::search::{
    Embedding, IndexBacklog, IndexClaim, IndexTask, Resize, ScoredMarket, VectorIndex,
};
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

use crate::error::from_query;
use crate::fixed::Fixed;
use crate::pool::PgPool;
use crate::replicas::ReadRouting;

/// pgvector's `vector` SQL type.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy)]
#[diesel(postgres_type(name = "vector"))]
pub struct Vector;

/// An embedding as a `vector` bind parameter.
#[derive(Debug, AsExpression)]
#[diesel(sql_type = Vector)]
struct VectorParam<'a>(&'a [f32]);

impl ToSql<Vector, Pg> for VectorParam<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        let dimensions = u16::try_from(self.0.len())?;
        out.write_all(&dimensions.to_be_bytes())?;
        out.write_all(&0u16.to_be_bytes())?;
        for value in self.0 {
            out.write_all(&value.to_be_bytes())?;
        }
        Ok(IsNull::No)
    }
}

/// Embeddings of the `markets` table. Searches go to a replica when [`ReadRouting`] has one;
/// claims, stores and schema changes to the primary.
#[derive(Debug, Clone)]
pub struct PgVectorIndex {
    pool: PgPool,
    reads: ReadRouting,
}

impl PgVectorIndex {
    /// An index over `pools`: a [`PgPool`] (the primary alone) or a [`ReadRouting`].
    pub fn new(pools: impl Into<ReadRouting>) -> Self {
        let reads = pools.into();
        Self {
            pool: reads.primary().clone(),
            reads,
        }
    }
}

/// A single integer result, selected `AS value`.
#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text)]
    text: String,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Nearest {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Float)]
    score: f32,
}

/// The nearest-neighbour query: `ORDER BY embedding <=> $1 LIMIT $2` is what the HNSW index
/// (`vector_cosine_ops`) serves.
const NEAREST: &str = "SELECT id, greatest(0, least(1, 1 - (embedding <=> $1)))::real AS score \
     FROM markets WHERE embedding IS NOT NULL ORDER BY embedding <=> $1 LIMIT $2";

/// The settings of a search transaction, in one round trip of utility statements (nothing to
/// plan).
///
/// `hnsw.ef_search = 100`: the width of pgvector's HNSW search, how many candidates a query
/// keeps while it walks the graph. An HNSW scan returns at most that many rows, so it must be at
/// least the largest search limit (50: pgvector's default of 40 would cut such pages short); a
/// wider search finds more of the true nearest neighbours at a cost about linear in it. 100 is
/// twice the largest limit and ten times the default one (10).
///
/// `enable_seqscan = off`: the planner underestimates the cost of detoasting every vector for a
/// sequential scan and skips the HNSW index once most rows are embedded (94 ms instead of 4 ms
/// on 10,000 markets); the index is always right for a top-k query, so insist on it.
const SEARCH_SETTINGS: &str = "SET LOCAL hnsw.ef_search = 100; SET LOCAL enable_seqscan = off";

fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The size of the `embedding` column's `vector(N)` type.
const COLUMN_DIMENSIONS: &str = "SELECT atttypmod::int8 AS value FROM pg_attribute \
     WHERE attrelid = 'markets'::regclass AND attname = 'embedding'";

/// Whether any market has an embedding.
const ANY_EMBEDDING: &str = "SELECT count(*) AS value FROM (SELECT 1 FROM markets WHERE embedding IS NOT NULL LIMIT 1) AS one";

/// Drops every embedding, leaving its market pending.
const DISCARD_EMBEDDINGS: &str = "UPDATE markets SET embedding = NULL, embedding_stale = true \
     WHERE embedding IS NOT NULL OR NOT embedding_stale";

/// Gives the (empty) column another size; the HNSW index, built for one size, is rebuilt
/// with it (as the migration made it).
fn retype(dimensions: usize) -> String {
    format!(
        "DROP INDEX markets_embedding_idx; \
         ALTER TABLE markets ALTER COLUMN embedding TYPE vector({dimensions}); \
         CREATE INDEX markets_embedding_idx ON markets USING hnsw (embedding vector_cosine_ops)"
    )
}

async fn number(conn: &mut AsyncPgConnection, query: &str) -> QueryResult<i64> {
    Ok(sql_query(query).get_result::<Number>(conn).await?.value)
}

async fn column_dimensions(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let found = number(conn, COLUMN_DIMENSIONS).await?;
    usize::try_from(found)
        .map_err(|error| diesel::result::Error::DeserializationError(error.into()))
}

#[async_trait]
impl VectorIndex for PgVectorIndex {
    async fn dimensions(&self) -> Result<usize, RepositoryError> {
        let mut conn = self.pool.get().await?;
        column_dimensions(&mut conn).await.map_err(from_query)
    }

    /// Changes the column type under an exclusive lock on `markets`, taken only when there may
    /// be something to change (so that instances starting with the right size never block
    /// searches): concurrent callers queue behind it and then see the new size.
    async fn resize(&self, dimensions: usize, mode: Resize) -> Result<usize, RepositoryError> {
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            if mode == Resize::IfEmpty && column_dimensions(conn).await? == dimensions {
                return Ok(dimensions);
            }
            conn.batch_execute("LOCK TABLE markets IN ACCESS EXCLUSIVE MODE")
                .await?;
            if mode == Resize::Discarding {
                conn.batch_execute(DISCARD_EMBEDDINGS).await?;
            }
            let current = column_dimensions(conn).await?;
            if current == dimensions || number(conn, ANY_EMBEDDING).await? > 0 {
                return Ok(current);
            }
            conn.batch_execute(&retype(dimensions)).await?;
            Ok(dimensions)
        })
        .await
        .map_err(from_query)
    }

    /// Cosine distance through the HNSW index; score = 1 - distance, clamped to `0..=1`.
    async fn nearest(
        &self,
        query: &Embedding,
        count: usize,
    ) -> Result<Vec<ScoredMarket>, RepositoryError> {
        let search = async |conn: &mut AsyncPgConnection| {
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                conn.batch_execute(SEARCH_SETTINGS).await?;
                // One fixed text with bound values: kept prepared on the connection.
                Fixed(
                    sql_query(NEAREST)
                        .bind::<Vector, _>(VectorParam(query.as_slice()))
                        .bind::<BigInt, _>(limit(count)),
                )
                .load::<Nearest>(conn)
                .await
            })
            .await
            .map_err(from_query)
        };
        let rows = self.reads.read(search).await?;
        Ok(rows
            .into_iter()
            .map(|row| ScoredMarket::new(MarketId::from(row.id), row.score))
            .collect())
    }
}

/// A claim: the oldest-changed stale markets that no live claim holds, locked with `SKIP
/// LOCKED` so concurrent claimers pass each other by, marked with the claim until the lease ends.
const CLAIM: &str = "UPDATE markets SET index_claim = $3, \
         index_claimed_until = now() + $2 * interval '1 millisecond' \
     WHERE id IN ( \
         SELECT id FROM markets \
         WHERE embedding_stale AND (index_claimed_until IS NULL OR index_claimed_until <= now()) \
         ORDER BY updated_at, id LIMIT $1 \
         FOR UPDATE SKIP LOCKED) \
     RETURNING id, version, name || E'\\n' || description AS text, updated_at";

/// Stores a batch in one statement: the embeddings of markets still at the claimed version, and
/// the end of the claim on the others (changed since: still pending, at their new version).
const STORE: &str = "WITH batch AS ( \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::vector[], $4::uuid[]) \
             AS b(id, version, embedding, claim)), \
     stored AS ( \
         UPDATE markets SET embedding = batch.embedding, embedding_stale = false, \
             index_claim = NULL, index_claimed_until = NULL \
         FROM batch WHERE markets.id = batch.id AND markets.version = batch.version \
         RETURNING markets.id), \
     released AS ( \
         UPDATE markets SET index_claim = NULL, index_claimed_until = NULL \
         FROM batch WHERE markets.id = batch.id AND markets.version <> batch.version \
             AND markets.index_claim = batch.claim \
         RETURNING markets.id) \
     SELECT count(*)::int8 AS value FROM stored";

fn version(task: &IndexTask) -> i64 {
    i64::try_from(task.version).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl IndexBacklog for PgVectorIndex {
    async fn claim(
        &self,
        batch: usize,
        lease: Duration,
    ) -> Result<Vec<IndexTask>, RepositoryError> {
        let claim = IndexClaim::new();
        let mut conn = self.pool.get().await?;
        let mut rows = sql_query(CLAIM)
            .bind::<BigInt, _>(limit(batch))
            .bind::<BigInt, _>(millis(lease))
            .bind::<SqlUuid, _>(claim.as_uuid())
            .load::<Pending>(&mut conn)
            .await
            .map_err(from_query)?;
        // RETURNING keeps no order.
        rows.sort_by_key(|row| (row.updated_at, row.id));
        Ok(rows
            .into_iter()
            .map(|row| {
                IndexTask::new(
                    MarketId::from(row.id),
                    u64::try_from(row.version).unwrap_or_default(),
                    row.text,
                    claim,
                )
            })
            .collect())
    }

    async fn store(&self, embedded: &[(IndexTask, Embedding)]) -> Result<usize, RepositoryError> {
        if embedded.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = embedded.iter().map(|(task, _)| task.id.as_uuid()).collect();
        let versions: Vec<i64> = embedded.iter().map(|(task, _)| version(task)).collect();
        let vectors: Vec<VectorParam<'_>> = embedded
            .iter()
            .map(|(_, embedding)| VectorParam(embedding.as_slice()))
            .collect();
        let claims: Vec<Uuid> = embedded
            .iter()
            .map(|(task, _)| task.claim.as_uuid())
            .collect();
        let mut conn = self.pool.get().await?;
        let stored = sql_query(STORE)
            .bind::<Array<SqlUuid>, _>(ids)
            .bind::<Array<BigInt>, _>(versions)
            .bind::<Array<Vector>, _>(vectors)
            .bind::<Array<SqlUuid>, _>(claims)
            .get_result::<Number>(&mut conn)
            .await
            .map_err(from_query)?;
        usize::try_from(stored.value).map_err(RepositoryError::unexpected)
    }

    async fn release(&self, tasks: &[IndexTask]) -> Result<(), RepositoryError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = tasks.iter().map(|task| task.id.as_uuid()).collect();
        let claims: Vec<Uuid> = tasks.iter().map(|task| task.claim.as_uuid()).collect();
        let mut conn = self.pool.get().await?;
        sql_query(
            "UPDATE markets SET index_claim = NULL, index_claimed_until = NULL \
             FROM unnest($1::uuid[], $2::uuid[]) AS released(id, claim) \
             WHERE markets.id = released.id AND markets.index_claim = released.claim",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<SqlUuid>, _>(claims)
        .execute(&mut conn)
        .await
        .map(drop)
        .map_err(from_query)
    }

    async fn mark_all_stale(&self) -> Result<u64, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let marked =
            sql_query("UPDATE markets SET embedding_stale = true WHERE NOT embedding_stale")
                .execute(&mut conn)
                .await
                .map_err(from_query)?;
        Ok(marked as u64)
    }

    async fn pending_count(&self) -> Result<u64, RepositoryError> {
        let mut conn = self.pool.get().await?;
        let found = sql_query("SELECT count(*) AS value FROM markets WHERE embedding_stale")
            .get_result::<Number>(&mut conn)
            .await
            .map_err(from_query)?;
        u64::try_from(found.value).map_err(RepositoryError::unexpected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PgMarketRepository;
    use crate::testing::TestDatabase;
    use diesel_async::SimpleAsyncConnection;
    use markets_domain::market::{
        Description, MarketName, MarketRepository, MarketStatus, NewMarket, Volume,
    };

    const DIMENSIONS: usize = 1536;

    /// A unit vector along `axis`, tilted towards `axis + 1` by `tilt`.
    fn direction(axis: usize, tilt: f32) -> Embedding {
        let mut values = vec![0.0; DIMENSIONS];
        values[axis] = 1.0;
        values[axis + 1] = tilt;
        Embedding::new(values).unwrap()
    }

    // The port's behaviour (pending, staleness, version checks, ranking, deletions) is
    // `vector_index_contract!`'s, run in tests/contract.rs; these are PostgreSQL's own details.

    #[tokio::test]
    async fn the_index_has_the_schema_dimension() {
        let db = TestDatabase::new().await;
        let index = PgVectorIndex::new(db.pool());
        assert_eq!(index.dimensions().await.unwrap(), DIMENSIONS);
    }

    #[tokio::test]
    async fn a_task_embeds_the_name_and_the_description_on_two_lines() {
        let db = TestDatabase::new().await;
        let new = NewMarket {
            id: MarketId::new(),
            creator_id: db.user("ann").await,
            name: MarketName::parse("Rain").unwrap(),
            description: Description::parse("about it").unwrap(),
            status: MarketStatus::Open,
            volume: Volume::ZERO,
        };
        let id = PgMarketRepository::new(db.pool())
            .create(new, &[])
            .await
            .unwrap()
            .id;
        let claimed = PgVectorIndex::new(db.pool());
        let claimed = claimed.claim(100, Duration::ZERO).await.unwrap();
        let task = claimed.into_iter().find(|task| task.id == id).unwrap();
        assert_eq!((task.version, task.text.as_str()), (1, "Rain\nabout it"));
    }

    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }

    #[tokio::test]
    async fn the_nearest_query_uses_the_hnsw_index_on_ten_thousand_markets() {
        let db = TestDatabase::new().await;
        let mut conn = db.pool().get().await.unwrap();
        // 10,000 markets, 1,000 of them embedded (random vectors): enough for the planner to
        // prefer the index, cheap enough to build in a test.
        conn.batch_execute(
            "INSERT INTO users (id, email, display_name, password_hash) \
               VALUES ('00000000-0000-7000-8000-000000000001', 'a@example.com', 'A', 'x');
             INSERT INTO markets (id, name, description, creator_id)
               SELECT gen_random_uuid(), 'm' || n, '', '00000000-0000-7000-8000-000000000001'
               FROM generate_series(1, 10000) AS n;
             UPDATE markets SET embedding = (
                 SELECT array_agg(random() - 0.5)::vector(1536) FROM generate_series(1, 1536)
                 WHERE markets.id IS NOT NULL)
               WHERE id IN (SELECT id FROM markets LIMIT 1000);
             ANALYZE markets;",
        )
        .await
        .unwrap();
        let plan: Vec<PlanLine> = sql_query(format!("EXPLAIN {NEAREST}"))
            .bind::<Vector, _>(VectorParam(direction(0, 0.0).as_slice()))
            .bind::<BigInt, _>(10)
            .load(&mut conn)
            .await
            .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|line| line.line).collect();
        let plan = plan.join("\n");
        println!("EXPLAIN nearest (10,000 markets):\n{plan}");
        assert!(
            plan.contains("Index Scan using markets_embedding_idx"),
            "{plan}"
        );
    }
}
