//! Query embedding latency, by hand (no timing asserts in tests): p50 and p99 over unique
//! queries, each embedded on its own as a search does, then the same for repeated ones (cache
//! hits). Run with a release build:
//!
//! ```sh
//! eval "$(scripts/model.sh)"
//! cargo run --release -p markets-minilm --example latency [QUERIES]
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use markets_domain::search::EmbeddingProvider;
use markets_minilm::{MiniLmEmbedder, MiniLmSettings};

const TOPICS: [&str; 8] = [
    "rain in Paris",
    "the price of bitcoin",
    "the Super Bowl",
    "interest rates in June",
    "the French presidential election",
    "a crewed landing on Mars",
    "crude oil above $120 a barrel",
    "the Premier League title",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let count: usize = std::env::args().nth(1).map_or(Ok(500), |n| n.parse())?;
    if count == 0 {
        return Err("QUERIES must be at least 1".into());
    }
    let dir = std::env::var("MARKETS_MODEL_DIR").map_err(|_| "set MARKETS_MODEL_DIR")?;
    let started = Instant::now();
    let embedder = MiniLmEmbedder::load(&MiniLmSettings::new(dir))?;
    println!("model loaded in {:?}", started.elapsed());
    let queries: Vec<String> = (0..count)
        .map(|n| {
            format!(
                "Will {} happen before {}?",
                TOPICS[n % TOPICS.len()],
                2030 + n
            )
        })
        .collect();
    // Warm-up: the first pass allocates and pages the weights in.
    embedder.embed(&["warm-up".to_owned()]).await?;
    report("unique queries", &timings(&embedder, &queries).await?);
    report("repeated (cached)", &timings(&embedder, &queries).await?);
    Ok(())
}

/// How long each query took, embedded alone, one after the other.
async fn timings(
    embedder: &MiniLmEmbedder,
    queries: &[String],
) -> Result<Vec<Duration>, Box<dyn Error>> {
    let mut timings = Vec::with_capacity(queries.len());
    for query in queries {
        let started = Instant::now();
        embedder.embed(std::slice::from_ref(query)).await?;
        timings.push(started.elapsed());
    }
    timings.sort();
    Ok(timings)
}

fn report(what: &str, sorted: &[Duration]) {
    let at = |quantile: f64| sorted[((sorted.len() - 1) as f64 * quantile).round() as usize];
    println!(
        "{what}: n={} p50={:?} p99={:?} max={:?}",
        sorted.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}
