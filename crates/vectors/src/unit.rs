//! Unit vectors as the in-memory copy holds them: normalised once, stored in half precision, and
//! compared by dot product (which, between unit vectors, is the cosine).
//!
//! Half precision halves the copy (2 bytes a component: 3 KiB for a 1536-dimension embedding)
//! for a rounding error of about 2⁻¹¹ per component, which moves a cosine by ~10⁻⁴ at most: far
//! below the gap between neighbours that search results depend on. Queries stay in `f32`.

use half::f16;
use std::sync::Arc;

/// One stored embedding, normalised, in half precision. Shared (not copied) between the copy's
/// rows and the approximate graph's points.
pub(crate) type Unit = Arc<[f16]>;

/// `values` scaled to unit length, so that a dot product is the cosine; a zero vector stays
/// zero (it is close to nothing).
pub(crate) fn normalised(values: &[f32]) -> Vec<f32> {
    let norm = dot(values, values).sqrt();
    if norm > 0.0 {
        values.iter().map(|v| v / norm).collect()
    } else {
        values.to_vec()
    }
}

/// `values` normalised and rounded to half precision.
pub(crate) fn unit(values: &[f32]) -> Unit {
    normalised(values)
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect()
}

/// The dot product, over 16 independent accumulators so the compiler can keep them in SIMD
/// registers (a single running sum would be a dependency chain it may not reorder).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_by(a, b, |x| x, |y| y)
}

/// The dot product of an `f32` query and a stored vector.
pub(crate) fn dot_stored(query: &[f32], stored: &[f16]) -> f32 {
    dot_by(query, stored, |x| x, widen)
}

/// The dot product of two stored vectors (the graph's distance).
pub(crate) fn dot_half(a: &[f16], b: &[f16]) -> f32 {
    dot_by(a, b, widen, widen)
}

/// [`dot`] of `a` and `b` read through `left` and `right`, which inline into the loop.
fn dot_by<A: Copy, B: Copy>(
    a: &[A],
    b: &[B],
    left: impl Fn(A) -> f32,
    right: impl Fn(B) -> f32,
) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0.0_f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| left(x) * right(y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((sum, &x), &y) in sums.iter_mut().zip(x).zip(y) {
            *sum += left(x) * right(y);
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// `f16` to `f32` in integer arithmetic that the compiler vectorises (`half`'s F16C path is a
/// call per eight values, which costs more than the dot product itself). Exact for normal
/// values; subnormals (below 6.1·10⁻⁵, negligible in a unit vector) flush to zero, and a unit
/// vector has no infinities or NaNs.
fn widen(half: f16) -> f32 {
    let bits = u32::from(half.to_bits());
    let magnitude = bits & 0x7fff;
    let widened = if magnitude < 0x0400 {
        0
    } else {
        (magnitude << 13) + ((127 - 15) << 23)
    };
    f32::from_bits(((bits & 0x8000) << 16) | widened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(length: usize, step: f32) -> Vec<f32> {
        (0..length).map(|i| (i as f32 * step).sin()).collect()
    }

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        for length in [1, 7, 16, 17, 33, 257, 1536] {
            let (a, b) = (wave(length, 0.37), wave(length, 0.11));
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "{length}");
        }
    }

    #[test]
    fn widening_matches_half_for_normal_values_and_flushes_subnormals() {
        for value in [1.0_f32, -0.5, 0.0254, -3.1e-3, 6.2e-5, 0.999] {
            let half = f16::from_f32(value);
            assert_eq!(widen(half), half.to_f32(), "{value}");
        }
        assert_eq!(widen(f16::from_f32(1e-6)), 0.0);
        assert_eq!(widen(f16::from_f32(-0.0)), 0.0);
    }

    #[test]
    fn half_precision_moves_a_cosine_by_little() {
        for length in [3, 300, 1536] {
            let (a, b) = (
                normalised(&wave(length, 0.37)),
                normalised(&wave(length, 0.11)),
            );
            let exact = dot(&a, &b);
            assert!((dot_stored(&a, &unit(&b)) - exact).abs() < 1e-3, "{length}");
            assert!(
                (dot_half(&unit(&a), &unit(&b)) - exact).abs() < 1e-3,
                "{length}"
            );
            assert!((dot_stored(&a, &unit(&a)) - 1.0).abs() < 1e-4, "{length}");
        }
    }
}
