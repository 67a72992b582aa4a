//! The in-memory copy of the embeddings: unit vectors in half precision, one allocation each,
//! searched exactly when the copy is small and through an HNSW graph when it is not (see
//! [`crate::ann`]).
//!
//! Each row is its own shared allocation rather than a slice of one buffer so that the graph
//! points at the same vector instead of holding a copy, and a row stored again is replaced
//! without moving the others (the graph's tombstone keeps the old one until it is rebuilt).
//! Whatever finds the candidates, they are scored exactly against the `f32` query.

use markets_domain::market::MarketId;
use markets_domain::search::ScoredMarket;
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::ann::Ann;
use crate::unit::{Unit, dot_stored, normalised, unit};

/// Embeddings as of one `vector_index.generation`.
#[derive(Default)]
pub struct Matrix {
    /// The generation loaded, `None` until the first load.
    pub generation: Option<i64>,
    dimensions: usize,
    ids: Vec<MarketId>,
    rows: HashMap<MarketId, usize>,
    /// `ids.len()` vectors of `dimensions` components, each of unit length (or all zeros).
    vectors: Vec<Unit>,
    ann: Ann,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("generation", &self.generation)
            .field("dimensions", &self.dimensions)
            .field("vectors", &self.ids.len())
            .finish()
    }
}

impl Matrix {
    /// An empty matrix of `dimensions`-component vectors at `generation`.
    pub fn new(generation: i64, dimensions: usize) -> Self {
        Self {
            generation: Some(generation),
            dimensions,
            ..Self::default()
        }
    }

    /// An empty matrix as [`Matrix::new`], with room for `rows` vectors, so that filling it
    /// allocates each table once, at its final size.
    pub fn with_capacity(generation: i64, dimensions: usize, rows: usize) -> Self {
        let mut matrix = Self::new(generation, dimensions);
        matrix.ids.reserve_exact(rows);
        matrix.rows.reserve(rows);
        matrix.vectors.reserve_exact(rows);
        matrix
    }

    /// Sets `id`'s vector (normalised); `values` must have the matrix's dimensions.
    pub fn put(&mut self, id: MarketId, values: &[f32]) {
        let vector = unit(values);
        let row = match self.rows.get(&id) {
            Some(&row) => {
                self.vectors[row] = vector;
                row
            }
            None => {
                self.rows.insert(id, self.ids.len());
                self.ids.push(id);
                self.vectors.push(vector);
                self.ids.len() - 1
            }
        };
        self.ann.put(row, &self.vectors[row]);
    }

    /// The `limit` vectors closest to `query` by cosine, best first (ties by id), scores
    /// clamped to `0..=1` as PostgreSQL's `1 - cosine distance` is. Approximate once the copy
    /// has a graph.
    pub fn nearest(&self, query: &[f32], limit: usize) -> Vec<ScoredMarket> {
        let query = normalised(query);
        match self.ann.candidates(&self.vectors, &query, limit) {
            Some(rows) => self.best(rows.into_iter(), &query, limit),
            None => self.best(0..self.vectors.len(), &query, limit),
        }
    }

    /// As [`Matrix::nearest`], always by scanning every vector.
    #[cfg(any(test, feature = "testing"))]
    pub fn exact(&self, query: &[f32], limit: usize) -> Vec<ScoredMarket> {
        self.best(0..self.vectors.len(), &normalised(query), limit)
    }

    /// Builds the approximate graph now (a search would start it on a thread of its own and
    /// scan exactly until it is done).
    #[cfg(any(test, feature = "testing"))]
    pub fn build_graph(&self) {
        self.ann.build_now(&self.vectors);
    }

    /// The best `limit` of `rows` for the unit vector `query`.
    fn best(
        &self,
        rows: impl Iterator<Item = usize>,
        query: &[f32],
        limit: usize,
    ) -> Vec<ScoredMarket> {
        let mut scored: Vec<(f32, usize)> = rows
            .map(|row| (dot_stored(query, &self.vectors[row]), row))
            .collect();
        let best_first = |a: &(f32, usize), b: &(f32, usize)| -> Ordering {
            b.0.total_cmp(&a.0)
                .then_with(|| self.ids[a.1].cmp(&self.ids[b.1]))
        };
        if limit < scored.len() {
            scored.select_nth_unstable_by(limit, best_first);
            scored.truncate(limit);
        }
        scored.sort_unstable_by(best_first);
        scored
            .into_iter()
            .map(|(score, row)| ScoredMarket::new(self.ids[row], score.clamp(0.0, 1.0)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_the_best_k_in_order_and_replacing_a_vector_moves_it() {
        let mut matrix = Matrix::new(0, 2);
        let ids: Vec<MarketId> = (0..5).map(|_| MarketId::new()).collect();
        for (id, angle) in ids.iter().zip([0.0_f32, 0.4, 0.8, 1.2, 3.0]) {
            matrix.put(*id, &[angle.cos() * 7.0, angle.sin() * 7.0]);
        }
        let top = matrix.nearest(&[1.0, 0.0], 3);
        let order: Vec<MarketId> = top.iter().map(|hit| hit.id).collect();
        assert_eq!(order, ids[..3]);
        assert!((top[0].score - 1.0).abs() < 1e-6);
        assert_eq!(matrix.nearest(&[1.0, 0.0], 0), []);
        assert_eq!(matrix.nearest(&[1.0, 0.0], 99).len(), 5);
        assert_eq!(
            matrix.nearest(&[1.0, 0.0], 99)[4].score,
            0.0,
            "opposite clamps to 0"
        );

        matrix.put(ids[4], &[1.0, 0.0]);
        let top = matrix.nearest(&[1.0, 0.0], 2);
        assert_eq!(top.len(), 2);
        assert!(top.iter().any(|hit| hit.id == ids[4]));
        assert_eq!(
            matrix.nearest(&[1.0, 0.0], 99).len(),
            5,
            "replaced, not added"
        );
    }

    #[test]
    fn a_zero_vector_is_close_to_nothing() {
        let mut matrix = Matrix::new(0, 3);
        matrix.put(MarketId::new(), &[0.0, 0.0, 0.0]);
        assert_eq!(matrix.nearest(&[1.0, 0.0, 0.0], 1)[0].score, 0.0);
    }
}
