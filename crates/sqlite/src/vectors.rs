//! [`VectorIndex`] served in-process: embeddings are stored in `market_embeddings` (a BLOB of
//! little-endian `f32`s and the market version it was computed from) and searched in memory:
//! exactly while the copy is small, through an HNSW graph once it is not ([`markets_vectors`]).
//!
//! The in-memory copy is loaded lazily by the first `nearest`. `store` updates it in place; any
//! other change to `market_embeddings`, whoever makes it (a deleted market's cascade, the
//! `markets reindex` command in another process), bumps `vector_index.generation` through
//! triggers, and `nearest` reloads when the generation it holds is no longer the stored one.
//! Checking costs one single-row read per query.
//!
//! `dimensions()` is `vector_index.dimensions` (1536 after the migration, like PostgreSQL's
//! column), which `resize` changes while no embedding is stored (or after dropping them all);
//! `store` refuses an embedding of another size as PostgreSQL does.

use async_trait::async_trait;
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Binary, Text};
use markets_domain::RepositoryError;
use markets_domain::market::MarketId;
use markets_domain::search::{
    Embedding, IndexBacklog, IndexClaim, IndexTask, Resize, ScoredMarket, VectorIndex,
};
use markets_vectors::Matrix;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::error::from_query;
use crate::pool::SqlitePool;
use crate::values::{Micros, SqlId};

/// Market embeddings in SQLite, searched in memory. Clones share the in-memory copy.
#[derive(Debug, Clone)]
pub struct SqliteVectorIndex {
    pool: SqlitePool,
    memory: Arc<RwLock<Matrix>>,
}

impl SqliteVectorIndex {
    /// An index over `pool`; nothing is loaded until the first search.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            memory: Arc::default(),
        }
    }
}

/// An embedding of the wrong size for the index.
#[derive(Debug, thiserror::Error)]
#[error("expected {expected} dimensions, not {actual}")]
struct WrongDimensions {
    expected: usize,
    actual: usize,
}

#[derive(QueryableByName)]
struct Settings {
    #[diesel(sql_type = BigInt)]
    dimensions: i64,
    #[diesel(sql_type = BigInt)]
    generation: i64,
}

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = Binary)]
    id: SqlId,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Text)]
    text: String,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Binary)]
    id: SqlId,
    #[diesel(sql_type = Binary)]
    vector: Vec<u8>,
}

fn settings(conn: &mut SqliteConnection) -> QueryResult<Settings> {
    sql_query("SELECT dimensions, generation FROM vector_index WHERE singleton = 1")
        .get_result(conn)
}

fn dimensions(settings: &Settings) -> Result<usize, RepositoryError> {
    usize::try_from(settings.dimensions).map_err(RepositoryError::unexpected)
}

fn check(expected: usize, embedding: &Embedding) -> Result<(), RepositoryError> {
    if embedding.dimensions() == expected {
        Ok(())
    } else {
        Err(RepositoryError::unexpected(WrongDimensions {
            expected,
            actual: embedding.dimensions(),
        }))
    }
}

fn to_blob(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn from_blob(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The stored embeddings, each with its market's id.
const STORED: &str = "SELECT markets.id AS id, market_embeddings.vector AS vector \
     FROM market_embeddings JOIN markets ON markets.row_id = market_embeddings.market_row_id";

/// Every stored embedding, with the generation they are as of (one read transaction).
///
/// The rows are counted first and then decoded one at a time into a matrix reserved for that
/// many, so the load peaks at the matrix and one row. Loading the rows first would hold every
/// BLOB beside the copy made from them, and a buffer grown by doubling overshoots its final size
/// and holds the old and the new allocation at once each time it grows.
fn load(conn: &mut SqliteConnection) -> Result<Matrix, RepositoryError> {
    conn.transaction(|conn| {
        let settings = settings(conn)?;
        let dimensions = dimensions(&settings)?;
        let count = sql_query(format!("SELECT count(*) AS value FROM ({STORED})"))
            .get_result::<Number>(conn)?;
        let mut matrix = Matrix::with_capacity(
            settings.generation,
            dimensions,
            usize::try_from(count.value).unwrap_or_default(),
        );
        for row in sql_query(STORED).load_iter::<Stored, DefaultLoadingMode>(conn)? {
            let row = row?;
            let values = from_blob(&row.vector);
            // Left by a change of dimensions that did not clear them: unusable, and pending anyway.
            if values.len() == dimensions {
                matrix.put(MarketId::from(row.id.0), &values);
            } else {
                tracing::warn!(market = %row.id.0, "skipping an embedding of the wrong size");
            }
        }
        Ok::<_, TxError>(matrix)
    })
    .map_err(TxError::into_repository)
}

/// A failure inside a transaction: diesel's (which rolls it back) or a refusal.
enum TxError {
    Query(diesel::result::Error),
    Repository(RepositoryError),
}

impl TxError {
    fn into_repository(self) -> RepositoryError {
        match self {
            Self::Query(error) => from_query(error),
            Self::Repository(error) => error,
        }
    }
}

impl From<diesel::result::Error> for TxError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Query(error)
    }
}

impl From<RepositoryError> for TxError {
    fn from(error: RepositoryError) -> Self {
        Self::Repository(error)
    }
}

/// What `store` changed, for the in-memory copy.
struct Change {
    before: i64,
    after: i64,
}

impl SqliteVectorIndex {
    /// Puts the `stored` embeddings in the in-memory copy, if it was current before the write
    /// that made `change`.
    ///
    /// Applied once the write is over, outside the writer gate: the copy's lock waits for
    /// searches under way, and for a reload as long as it reads every embedding, which must not
    /// hold up every other write of the process. A change applied out of order, or not at all
    /// because the caller went away, only leaves the copy behind: the next search reloads it.
    async fn apply(
        &self,
        stored: Vec<(MarketId, Embedding)>,
        change: Change,
    ) -> Result<(), RepositoryError> {
        let memory = Arc::clone(&self.memory);
        tokio::task::spawn_blocking(move || {
            let mut matrix = memory.write().unwrap_or_else(PoisonError::into_inner);
            // Our write is the only change between `before` and `after` (we held the write
            // lock): a copy that was current before it is current with it applied. A copy that
            // is at any other generation is left to reload.
            if matrix.generation == Some(change.before) {
                for (id, embedding) in &stored {
                    matrix.put(*id, embedding.as_slice());
                }
                matrix.generation = Some(change.after);
            }
        })
        .await
        .map_err(RepositoryError::unexpected)
    }
}

/// [`VectorIndex::resize`] in one transaction: bumping the generation makes every process's
/// in-memory copy reload at the new size.
fn resize(conn: &mut SqliteConnection, dimensions: i64, mode: Resize) -> QueryResult<i64> {
    if mode == Resize::Discarding {
        sql_query("DELETE FROM market_embeddings").execute(conn)?;
        sql_query("UPDATE markets SET embedding_stale = 1 WHERE embedding_stale = 0")
            .execute(conn)?;
    }
    let current = settings(conn)?.dimensions;
    let stored = sql_query("SELECT EXISTS (SELECT 1 FROM market_embeddings) AS value")
        .get_result::<Number>(conn)?
        .value;
    if current == dimensions || stored != 0 {
        return Ok(current);
    }
    sql_query(
        "UPDATE vector_index SET dimensions = ?, generation = generation + 1 WHERE singleton = 1",
    )
    .bind::<BigInt, _>(dimensions)
    .execute(conn)?;
    Ok(dimensions)
}

#[async_trait]
impl VectorIndex for SqliteVectorIndex {
    async fn dimensions(&self) -> Result<usize, RepositoryError> {
        let settings = self.pool.run(settings).await?.map_err(from_query)?;
        dimensions(&settings)
    }

    /// Takes the write turn only when there may be something to change.
    async fn resize(&self, dimensions: usize, mode: Resize) -> Result<usize, RepositoryError> {
        if mode == Resize::IfEmpty && self.dimensions().await? == dimensions {
            return Ok(dimensions);
        }
        let wanted = i64::try_from(dimensions).map_err(RepositoryError::unexpected)?;
        let resized = self
            .pool
            .write(move |conn| conn.immediate_transaction(|conn| resize(conn, wanted, mode)))
            .await?
            .map_err(from_query)?;
        usize::try_from(resized).map_err(RepositoryError::unexpected)
    }

    /// Cosine similarity over the stored embeddings, exact while they are few and approximate
    /// (HNSW) beyond; score = cosine clamped to `0..=1` (PostgreSQL's `1 - cosine distance`).
    async fn nearest(
        &self,
        query: &Embedding,
        limit: usize,
    ) -> Result<Vec<ScoredMarket>, RepositoryError> {
        let query = query.clone();
        let memory = Arc::clone(&self.memory);
        self.pool
            .run(move |conn| {
                let stored = settings(conn).map_err(from_query)?;
                check(dimensions(&stored)?, &query)?;
                {
                    let matrix = memory.read().unwrap_or_else(PoisonError::into_inner);
                    if matrix.generation == Some(stored.generation) {
                        return Ok(matrix.nearest(query.as_slice(), limit));
                    }
                }
                let mut matrix = memory.write().unwrap_or_else(PoisonError::into_inner);
                // Another search may have reloaded while this one waited for the lock.
                if matrix.generation != Some(stored.generation) {
                    // The stale copy is never searched again: freed before the new one is
                    // built, a reload peaks at one copy, not two. Should the load fail, the
                    // empty copy (no generation) is reloaded by the next search.
                    *matrix = Matrix::default();
                    *matrix = load(conn)?;
                }
                Ok(matrix.nearest(query.as_slice(), limit))
            })
            .await?
    }
}

/// A claim (?1 the claim, ?2 its end, ?3 now, ?4 the limit): the oldest-changed stale markets
/// that no live claim holds, taken under SQLite's write lock so that concurrent claimers (threads
/// or processes) never get the same market.
const CLAIM: &str = "UPDATE markets SET index_claim = ?1, index_claimed_until = ?2 \
     WHERE row_id IN ( \
         SELECT row_id FROM markets \
         WHERE embedding_stale = 1 \
             AND (index_claimed_until IS NULL OR index_claimed_until <= ?3) \
         ORDER BY updated_at, id LIMIT ?4) \
     RETURNING id, version, name || char(10) || description AS text, updated_at";

/// Ends the claim of a market whose embedding is not stored (?1 the market, ?2 the claim).
const RELEASE: &str = "UPDATE markets SET index_claim = NULL, index_claimed_until = NULL \
     WHERE id = ?1 AND index_claim = ?2";

fn version(task: &IndexTask) -> i64 {
    i64::try_from(task.version).unwrap_or(i64::MAX)
}

/// Stores one embedding inside the caller's transaction, if its market is still at the task's
/// version; otherwise ends the task's claim. Whether it was stored.
fn store_one(
    conn: &mut SqliteConnection,
    task: &IndexTask,
    vector: &[f32],
) -> Result<bool, TxError> {
    let row_id = sql_query(
        "UPDATE markets SET embedding_stale = 0, index_claim = NULL, index_claimed_until = NULL \
         WHERE id = ? AND version = ? RETURNING row_id AS value",
    )
    .bind::<Binary, _>(SqlId(task.id.as_uuid()))
    .bind::<BigInt, _>(version(task))
    .get_result::<Number>(conn)
    .optional()?;
    let Some(row_id) = row_id else {
        sql_query(RELEASE)
            .bind::<Binary, _>(SqlId(task.id.as_uuid()))
            .bind::<Binary, _>(SqlId(task.claim.as_uuid()))
            .execute(conn)?;
        return Ok(false);
    };
    sql_query(
        "INSERT INTO market_embeddings (market_row_id, version, vector) \
         VALUES (?, ?, ?) ON CONFLICT (market_row_id) DO UPDATE \
         SET version = excluded.version, vector = excluded.vector",
    )
    .bind::<BigInt, _>(row_id.value)
    .bind::<BigInt, _>(version(task))
    .bind::<Binary, _>(to_blob(vector))
    .execute(conn)?;
    Ok(true)
}

#[async_trait]
impl IndexBacklog for SqliteVectorIndex {
    async fn claim(
        &self,
        batch: usize,
        lease: Duration,
    ) -> Result<Vec<IndexTask>, RepositoryError> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let claim = IndexClaim::new();
        let mut rows = self
            .pool
            .write(move |conn| {
                let now = Micros::now();
                sql_query(CLAIM)
                    .bind::<Binary, _>(SqlId(claim.as_uuid()))
                    .bind::<BigInt, _>(now.plus(lease))
                    .bind::<BigInt, _>(now)
                    .bind::<BigInt, _>(limit)
                    .load::<Pending>(conn)
            })
            .await?
            .map_err(from_query)?;
        // RETURNING keeps no order.
        rows.sort_by_key(|row| (row.updated_at, row.id.0));
        Ok(rows
            .into_iter()
            .map(|row| {
                IndexTask::new(
                    MarketId::from(row.id.0),
                    u64::try_from(row.version).unwrap_or_default(),
                    row.text,
                    claim,
                )
            })
            .collect())
    }

    /// One transaction under one write lock (one commit), however large the batch: SQLite's
    /// statements cost no round trip, its commits do.
    async fn store(&self, embedded: &[(IndexTask, Embedding)]) -> Result<usize, RepositoryError> {
        if embedded.is_empty() {
            return Ok(0);
        }
        let batch = embedded.to_vec();
        let (stored, change) = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let before = settings(conn)?;
                    let expected = dimensions(&before)?;
                    let mut stored = Vec::new();
                    for (task, embedding) in batch {
                        check(expected, &embedding)?;
                        if store_one(conn, &task, embedding.as_slice())? {
                            stored.push((task.id, embedding));
                        }
                    }
                    let after = settings(conn)?;
                    Ok::<_, TxError>((
                        stored,
                        Change {
                            before: before.generation,
                            after: after.generation,
                        },
                    ))
                })
                .map_err(TxError::into_repository)
            })
            .await??;
        let count = stored.len();
        if count > 0 {
            self.apply(stored, change).await?;
        }
        Ok(count)
    }

    async fn release(&self, tasks: &[IndexTask]) -> Result<(), RepositoryError> {
        let released: Vec<(SqlId, SqlId)> = tasks
            .iter()
            .map(|task| (SqlId(task.id.as_uuid()), SqlId(task.claim.as_uuid())))
            .collect();
        self.pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    for (id, claim) in released {
                        sql_query(RELEASE)
                            .bind::<Binary, _>(id)
                            .bind::<Binary, _>(claim)
                            .execute(conn)?;
                    }
                    QueryResult::Ok(())
                })
            })
            .await?
            .map_err(from_query)
    }

    async fn mark_all_stale(&self) -> Result<u64, RepositoryError> {
        let marked = self
            .pool
            .write(|conn| {
                sql_query("UPDATE markets SET embedding_stale = 1 WHERE embedding_stale = 0")
                    .execute(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(marked as u64)
    }

    async fn pending_count(&self) -> Result<u64, RepositoryError> {
        let found = self
            .pool
            .run(|conn| {
                sql_query("SELECT count(*) AS value FROM markets WHERE embedding_stale = 1")
                    .get_result::<Number>(conn)
            })
            .await?
            .map_err(from_query)?;
        u64::try_from(found.value).map_err(RepositoryError::unexpected)
    }
}
