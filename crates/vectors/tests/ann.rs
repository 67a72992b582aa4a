//! The in-memory copy's approximate search (HNSW) against its exact scan: recall@10 over a
//! clustered synthetic set, and stores made after the graph was built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_domain::market::MarketId;
use markets_vectors::Matrix;
use markets_vectors::testing::{Embeddings, recall};

const DIMENSIONS: usize = 384;
const VECTORS: usize = 15_000;
const QUERIES: usize = 200;

/// A copy of [`VECTORS`] embeddings with its graph built, and the first market's id and vector.
fn filled(embeddings: &mut Embeddings) -> (Matrix, MarketId, Vec<f32>) {
    let mut copy = Matrix::new(0, DIMENSIONS);
    let (first, vector) = (MarketId::new(), embeddings.next_embedding());
    copy.put(first, &vector);
    for _ in 1..VECTORS {
        copy.put(MarketId::new(), &embeddings.next_embedding());
    }
    copy.build_graph();
    (copy, first, vector)
}

#[test]
fn the_graph_finds_the_exact_top_10_and_follows_later_stores() {
    let mut embeddings = Embeddings::new(DIMENSIONS, 100, 20);
    let (mut copy, moved, old) = filled(&mut embeddings);

    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| embeddings.next_embedding()).collect();
    let total: f64 = queries
        .iter()
        .map(|query| recall(&copy.nearest(query, 10), &copy.exact(query, 10)))
        .sum();
    let mean = total / QUERIES as f64;
    assert!(mean >= 0.95, "recall@10 {mean}");

    // A market stored again with a query's own vector is then that query's best match, and
    // no longer found where it was.
    let query = &queries[0];
    assert_eq!(copy.nearest(&old, 1)[0].id, moved);
    copy.put(moved, query);
    let top = copy.nearest(query, 10);
    assert_eq!(top[0].id, moved, "{top:?}");
    assert!((top[0].score - 1.0).abs() < 1e-3, "{top:?}");
    assert_eq!(
        top.iter().filter(|hit| hit.id == moved).count(),
        1,
        "no tombstone"
    );
    let old_place = copy.nearest(&old, 10);
    assert!(
        old_place
            .iter()
            .all(|hit| hit.id != moved || hit.score < 0.999),
        "{old_place:?}"
    );

    // A new market is found as well.
    let added = MarketId::new();
    copy.put(added, &queries[1]);
    assert_eq!(copy.nearest(&queries[1], 10)[0].id, added);
}
