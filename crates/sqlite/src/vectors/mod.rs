//! [`VectorIndex`] served in-process: embeddings are stored in `market_embeddings` (a BLOB of
//! little-endian `f32`s and the market version it was computed from) and searched in memory by
//! exact cosine top-k (see [`matrix`]).
//!
//! The in-memory copy is loaded lazily by the first `nearest`. `store` updates it in place; any
//! other change to `market_embeddings`, whoever makes it (a deleted market's cascade, the
//! `markets reindex` command in another process), bumps `vector_index.generation` through
//! triggers, and `nearest` reloads when the generation it holds is no longer the stored one.
//! Checking costs one single-row read per query.
//!
//! `dimensions()` is `vector_index.dimensions`, fixed by the migration (1536, like PostgreSQL's
//! `vector(1536)` column), so the start-up check against the provider catches a mismatch;
//! `store` refuses an embedding of another size as PostgreSQL does.

mod matrix;

use async_trait::async_trait;
use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Binary, Text};
use markets_domain::RepositoryError;
use markets_domain::market::MarketId;
use markets_domain::search::{Embedding, IndexBacklog, IndexTask, ScoredMarket, VectorIndex};
use std::sync::{Arc, PoisonError, RwLock};

use self::matrix::Matrix;
use crate::error::from_query;
use crate::pool::SqlitePool;
use crate::values::SqlId;

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

#[async_trait]
impl VectorIndex for SqliteVectorIndex {
    async fn dimensions(&self) -> Result<usize, RepositoryError> {
        let settings = self.pool.run(settings).await?.map_err(from_query)?;
        dimensions(&settings)
    }

    /// Exact cosine similarity over every stored embedding; score = cosine clamped to `0..=1`
    /// (PostgreSQL's `1 - cosine distance`).
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

#[async_trait]
impl IndexBacklog for SqliteVectorIndex {
    async fn pending(&self, batch: usize) -> Result<Vec<IndexTask>, RepositoryError> {
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let rows = self
            .pool
            .run(move |conn| {
                sql_query(
                    "SELECT id, version, name || char(10) || description AS text FROM markets \
                     WHERE embedding_stale = 1 ORDER BY updated_at, id LIMIT ?",
                )
                .bind::<BigInt, _>(limit)
                .load::<Pending>(conn)
            })
            .await?
            .map_err(from_query)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                IndexTask::new(
                    MarketId::from(row.id.0),
                    u64::try_from(row.version).unwrap_or_default(),
                    row.text,
                )
            })
            .collect())
    }

    async fn store(
        &self,
        task: &IndexTask,
        embedding: &Embedding,
    ) -> Result<bool, RepositoryError> {
        let (id, version) = (task.id, i64::try_from(task.version).unwrap_or(i64::MAX));
        let stored = embedding.clone();
        let change = self
            .pool
            .write(move |conn| {
                conn.immediate_transaction(|conn| {
                    let before = settings(conn)?;
                    check(dimensions(&before)?, &stored)?;
                    let row_id = sql_query(
                        "UPDATE markets SET embedding_stale = 0 WHERE id = ? AND version = ? \
                         RETURNING row_id AS value",
                    )
                    .bind::<Binary, _>(SqlId(id.as_uuid()))
                    .bind::<BigInt, _>(version)
                    .get_result::<Number>(conn)
                    .optional()?;
                    let Some(row_id) = row_id else {
                        return Ok(None);
                    };
                    sql_query(
                        "INSERT INTO market_embeddings (market_row_id, version, vector) \
                         VALUES (?, ?, ?) ON CONFLICT (market_row_id) DO UPDATE \
                         SET version = excluded.version, vector = excluded.vector",
                    )
                    .bind::<BigInt, _>(row_id.value)
                    .bind::<BigInt, _>(version)
                    .bind::<Binary, _>(to_blob(stored.as_slice()))
                    .execute(conn)?;
                    let after = settings(conn)?;
                    Ok::<_, TxError>(Some(Change {
                        before: before.generation,
                        after: after.generation,
                    }))
                })
                .map_err(TxError::into_repository)
            })
            .await??;
        let Some(change) = change else {
            return Ok(false);
        };
        // Applied once the write is over, outside the writer gate: the copy's lock waits for
        // searches under way, and for a reload as long as it reads every embedding, which must
        // not hold up every other write of the process. A change applied out of order, or not
        // at all because the caller went away, only leaves the copy behind: the next search
        // reloads it.
        let (memory, embedding) = (Arc::clone(&self.memory), embedding.clone());
        tokio::task::spawn_blocking(move || {
            let mut matrix = memory.write().unwrap_or_else(PoisonError::into_inner);
            // Our write is the only change between `before` and `after` (we held the write
            // lock): a copy that was current before it is current with it applied. A copy that
            // is at any other generation is left to reload.
            if matrix.generation == Some(change.before) {
                matrix.put(id, embedding.as_slice());
                matrix.generation = Some(change.after);
            }
        })
        .await
        .map_err(RepositoryError::unexpected)?;
        Ok(true)
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
