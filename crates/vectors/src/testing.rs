//! Synthetic embeddings to fill a [`Matrix`](crate::Matrix) with, and recall to measure its
//! approximate search against its exact scan by (the recall test, the `ann_recall` example).

use markets_domain::market::MarketId;
use markets_domain::search::ScoredMarket;
use std::collections::HashSet;

/// The share of `exact`'s markets that `found` has (recall@k for k = `exact.len()`).
pub fn recall(found: &[ScoredMarket], exact: &[ScoredMarket]) -> f64 {
    let found: HashSet<MarketId> = found.iter().map(|hit| hit.id).collect();
    let hits = exact.iter().filter(|hit| found.contains(&hit.id)).count();
    hits as f64 / exact.len().max(1) as f64
}

/// Deterministic embeddings shaped like a text model's: points of a low-dimensional latent space,
/// grouped around `clusters` centres, mapped into `dimensions` by a fixed random basis, plus a
/// little noise. Real embeddings have such a low intrinsic dimension; an isotropic cloud (or
/// clusters with nothing between them) has no meaningful neighbours, and no index finds them.
#[derive(Debug)]
pub struct Embeddings {
    random: SplitMix,
    basis: Vec<Vec<f32>>,
    centres: Vec<Vec<f32>>,
    dimensions: usize,
}

/// Dimensions of the latent space.
const LATENT: usize = 24;

impl Embeddings {
    /// A generator of `dimensions`-component embeddings around `clusters` centres, from `seed`.
    pub fn new(dimensions: usize, clusters: usize, seed: u64) -> Self {
        let mut random = SplitMix(seed);
        let basis = (0..LATENT).map(|_| random.gaussians(dimensions)).collect();
        let centres = (0..clusters.max(1))
            .map(|_| random.gaussians(LATENT))
            .collect();
        Self {
            random,
            basis,
            centres,
            dimensions,
        }
    }

    /// The next embedding.
    pub fn next_embedding(&mut self) -> Vec<f32> {
        let centre = &self.centres[self.random.below(self.centres.len())];
        let spread = self.random.gaussians(LATENT);
        let mut values: Vec<f32> = self
            .random
            .gaussians(self.dimensions)
            .into_iter()
            .map(|noise| noise * 0.5)
            .collect();
        for ((direction, centre), spread) in self.basis.iter().zip(centre).zip(spread) {
            let weight = centre + 0.5 * spread;
            for (value, component) in values.iter_mut().zip(direction) {
                *value += weight * component;
            }
        }
        values
    }
}

/// SplitMix64: a tiny, seedable generator (no dependency for test data).
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..1`.
    fn unit_interval(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// `count` standard normal values (Box-Muller).
    fn gaussians(&mut self, count: usize) -> Vec<f32> {
        (0..count)
            .map(|_| {
                let radius = (-2.0 * (1.0 - self.unit_interval()).ln()).sqrt();
                radius * (std::f32::consts::TAU * self.unit_interval()).cos()
            })
            .collect()
    }
}
