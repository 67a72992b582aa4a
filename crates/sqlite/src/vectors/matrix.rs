//! The in-memory copy of the embeddings: unit vectors in one contiguous `Vec<f32>`, searched
//! exhaustively. Exact cosine top-k over ten thousand 1536-dimension vectors is a few million
//! multiply-adds, which a loop the compiler vectorises does in milliseconds: no approximate
//! index is worth its recall loss at this store's scale.

use markets_domain::market::MarketId;
use markets_domain::search::ScoredMarket;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Embeddings as of one `vector_index.generation`.
#[derive(Default)]
pub(super) struct Matrix {
    /// The generation loaded, `None` until the first load.
    pub(super) generation: Option<i64>,
    dimensions: usize,
    ids: Vec<MarketId>,
    rows: HashMap<MarketId, usize>,
    /// `ids.len()` rows of `dimensions` components, each of unit length (or all zeros).
    values: Vec<f32>,
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

/// `values` scaled to unit length, so that a dot product is the cosine; a zero vector stays
/// zero (it is close to nothing).
pub(super) fn normalised(values: &[f32]) -> Vec<f32> {
    let norm = dot(values, values).sqrt();
    if norm > 0.0 {
        values.iter().map(|v| v / norm).collect()
    } else {
        values.to_vec()
    }
}

/// The dot product, over 16 independent accumulators so the compiler can keep them in SIMD
/// registers (a single running sum would be a dependency chain it may not reorder).
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0.0_f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

impl Matrix {
    /// An empty matrix of `dimensions`-component vectors at `generation`.
    pub(super) fn new(generation: i64, dimensions: usize) -> Self {
        Self {
            generation: Some(generation),
            dimensions,
            ..Self::default()
        }
    }

    /// An empty matrix as [`Matrix::new`], with room for `rows` vectors, so that filling it
    /// allocates each buffer once, at its final size.
    pub(super) fn with_capacity(generation: i64, dimensions: usize, rows: usize) -> Self {
        let mut matrix = Self::new(generation, dimensions);
        matrix.ids.reserve_exact(rows);
        matrix.rows.reserve(rows);
        matrix.values.reserve_exact(rows.saturating_mul(dimensions));
        matrix
    }

    /// Sets `id`'s vector (normalised); `values` must have the matrix's dimensions.
    pub(super) fn put(&mut self, id: MarketId, values: &[f32]) {
        let unit = normalised(values);
        match self.rows.get(&id) {
            Some(&row) => {
                let start = row * self.dimensions;
                self.values[start..start + self.dimensions].copy_from_slice(&unit);
            }
            None => {
                self.rows.insert(id, self.ids.len());
                self.ids.push(id);
                self.values.extend_from_slice(&unit);
            }
        }
    }

    /// The `limit` vectors closest to `query` by cosine, best first (ties by id), scores
    /// clamped to `0..=1` as PostgreSQL's `1 - cosine distance` is.
    pub(super) fn nearest(&self, query: &[f32], limit: usize) -> Vec<ScoredMarket> {
        let query = normalised(query);
        let mut scored: Vec<(f32, usize)> = self
            .values
            .chunks_exact(self.dimensions.max(1))
            .map(|row| dot(row, &query))
            .enumerate()
            .map(|(row, score)| (score, row))
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
    fn dot_matches_the_plain_sum_for_every_length() {
        for length in [1, 7, 16, 17, 33, 1536] {
            let a: Vec<f32> = (0..length).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..length).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "{length}");
        }
    }

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
