//! Recall@10 and query latency of the embedded set's vector search, exact scan against the
//! HNSW graph, over synthetic clustered embeddings:
//!
//! ```text
//! cargo run --release -p markets-vectors --example ann_recall [VECTORS] [DIMENSIONS]
//! ```
//!
//! (100,000 vectors of 1536 dimensions by default, 200 queries.) Memory is the process's
//! resident set growth, so it includes allocator overhead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_domain::market::MarketId;
use markets_domain::search::ScoredMarket;
use markets_vectors::Matrix;
use markets_vectors::testing::{Embeddings, recall};
use std::time::{Duration, Instant};

const QUERIES: usize = 200;
const LIMIT: usize = 10;
/// Vectors stored once the graph is built, to time an incremental insert.
const STORES: usize = 200;

fn argument(position: usize, default: usize) -> usize {
    std::env::args()
        .nth(position)
        .map_or(default, |value| value.parse().expect("a count"))
}

/// The resident set size in bytes (Linux), 0 where unknown.
fn resident() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Each query's answer and how long it took, sorted latencies.
fn timed(
    queries: &[Vec<f32>],
    search: impl Fn(&[f32]) -> Vec<ScoredMarket>,
) -> (Vec<Vec<ScoredMarket>>, Vec<Duration>) {
    let (mut answers, mut latencies) = (Vec::new(), Vec::new());
    for query in queries {
        let start = Instant::now();
        answers.push(search(query));
        latencies.push(start.elapsed());
    }
    latencies.sort();
    (answers, latencies)
}

fn percentile(sorted: &[Duration], share: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    let (vectors, dimensions) = (argument(1, 100_000), argument(2, 1536));
    let mut embeddings = Embeddings::new(dimensions, 100, 20);
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| embeddings.next_embedding()).collect();

    let empty = resident();
    let mut copy = Matrix::new(0, dimensions);
    for _ in 0..vectors {
        copy.put(MarketId::new(), &embeddings.next_embedding());
    }
    let loaded = resident();
    let start = Instant::now();
    copy.build_graph();
    let build = start.elapsed();
    let built = resident();

    let (exact, exact_latency) = timed(&queries, |query| copy.exact(query, LIMIT));
    let (found, graph_latency) = timed(&queries, |query| copy.nearest(query, LIMIT));
    let mean_recall = found
        .iter()
        .zip(&exact)
        .map(|(found, exact)| recall(found, exact))
        .sum::<f64>()
        / QUERIES as f64;

    println!("{vectors} vectors of {dimensions} dimensions, {QUERIES} queries, top {LIMIT}");
    println!("| search | p50 ms | p99 ms | recall@10 |");
    println!("|---|---|---|---|");
    for (name, latency, recall) in [
        ("exact scan", &exact_latency, 1.0),
        ("HNSW", &graph_latency, mean_recall),
    ] {
        let (p50, p99) = (percentile(latency, 0.5), percentile(latency, 0.99));
        println!("| {name} | {p50:.2} | {p99:.2} | {recall:.3} |");
    }
    println!("graph build: {:.1} s", build.as_secs_f64());
    let start = Instant::now();
    for _ in 0..STORES {
        copy.put(MarketId::new(), &embeddings.next_embedding());
    }
    let store = start.elapsed().as_secs_f64() * 1000.0 / STORES as f64;
    println!("a store into the built graph: {store:.2} ms");
    let (vectors_bytes, graph_bytes) = (loaded.saturating_sub(empty), built.saturating_sub(loaded));
    println!(
        "memory: vectors {:.0} MiB ({} B each), graph {:.0} MiB ({} B each)",
        mib(vectors_bytes),
        vectors_bytes / vectors.max(1),
        mib(graph_bytes),
        graph_bytes / vectors.max(1),
    );
}
