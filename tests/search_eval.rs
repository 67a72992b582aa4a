//! Search quality, measured: the labelled set in `search_eval/set.json` (64 markets over eight
//! topics, 40 queries that share no word with the markets they should find) scored with
//! recall@10 and nDCG@10 for the three ways a search can be answered: by meaning (the in-process
//! model), by the hashing embedder, and by the database's text search (the fallback). Each runs
//! through the service's own path on the embedded store: markets created, embedded by the
//! indexer, searched by `SearchService` (or the repository's text search).
//!
//! `just search-eval` prints the table (`cargo test --test search_eval -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use markets_domain::market::{
    Description, MarketId, MarketName, MarketRepository, MarketStatus, NewMarket, ScoredSummary,
    SearchLimit, SearchMode, SearchQuery, Volume,
};
use markets_domain::search::{EmbeddingProvider, IndexPacing, IndexService, SearchService};
use markets_local::HashingEmbedder;
use markets_minilm::{MiniLmEmbedder, MiniLmSettings};
use markets_sqlite::testing::TestDatabase;
use markets_sqlite::{SqliteMarketRepository, SqliteVectorIndex};
use serde::Deserialize;

/// How many results are scored: a search's default page.
const DEPTH: usize = 10;

/// The targets: the model finds at least this share of what it should...
const MODEL_RECALL_TARGET: f64 = 0.8;
/// ...and at least this many times what the hashing embedder finds.
const MODEL_OVER_HASHING_TARGET: f64 = 2.0;

/// Words that carry no topic: a query may share these with its markets.
const STOP_WORDS: &[&str] = &[
    "a", "after", "again", "all", "an", "and", "any", "are", "as", "at", "be", "before", "by",
    "each", "for", "from", "has", "have", "in", "into", "is", "it", "its", "more", "most", "next",
    "no", "not", "of", "on", "or", "over", "than", "that", "the", "this", "to", "under", "was",
    "will", "with", "yes",
];

#[derive(Debug, Deserialize)]
struct EvaluationSet {
    markets: Vec<LabelledMarket>,
    queries: Vec<LabelledQuery>,
}

#[derive(Debug, Deserialize)]
struct LabelledMarket {
    key: String,
    name: String,
    description: String,
}

#[derive(Debug, Deserialize)]
struct LabelledQuery {
    text: String,
    relevant: Vec<String>,
}

fn evaluation_set() -> EvaluationSet {
    serde_json::from_str(include_str!("search_eval/set.json")).unwrap()
}

/// Lower-cased runs of letters and digits, three or more long, stop words left out.
fn content_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 3 && !STOP_WORDS.contains(word))
        .map(str::to_owned)
        .collect()
}

/// Whether two words could be one word's forms: one begins the other ("rate", "rates";
/// "orbit", "orbiting") or they share their first five letters ("elected", "election").
fn same_stem(a: &str, b: &str) -> bool {
    let prefix = |word: &str| word.chars().take(5).collect::<String>();
    a.starts_with(b)
        || b.starts_with(a)
        || (prefix(a).chars().count() == 5 && prefix(a) == prefix(b))
}

#[test]
fn no_query_shares_a_word_with_the_markets_it_should_find() {
    let set = evaluation_set();
    let texts: HashMap<&str, String> = set
        .markets
        .iter()
        .map(|market| {
            (
                market.key.as_str(),
                format!("{} {}", market.name, market.description),
            )
        })
        .collect();
    assert!(set.markets.len() >= 60 && set.queries.len() >= 40);
    for query in &set.queries {
        for key in &query.relevant {
            let market = content_words(&texts[key.as_str()]);
            for word in content_words(&query.text) {
                let shared = market.iter().find(|other| same_stem(&word, other));
                assert!(
                    shared.is_none(),
                    "{:?} and {key} share {word}/{shared:?}",
                    query.text
                );
            }
        }
    }
}

/// One searcher's scores over the whole set: means over the queries.
#[derive(Debug, Default)]
struct Scores {
    recall: f64,
    ndcg: f64,
}

impl Scores {
    /// Scores the `found` keys (best first) of each query against its labels.
    fn of(set: &EvaluationSet, found: &[Vec<String>]) -> Self {
        let queries = set.queries.len() as f64;
        let mut scores = Self::default();
        for (query, found) in set.queries.iter().zip(found) {
            let relevant: HashSet<&str> = query.relevant.iter().map(String::as_str).collect();
            let hits: Vec<bool> = found
                .iter()
                .take(DEPTH)
                .map(|key| relevant.contains(key.as_str()))
                .collect();
            scores.recall += hits.iter().filter(|hit| **hit).count() as f64 / relevant.len() as f64;
            scores.ndcg +=
                dcg(hits.iter().copied()) / dcg((0..relevant.len().min(DEPTH)).map(|_| true));
        }
        scores.recall /= queries;
        scores.ndcg /= queries;
        scores
    }
}

/// Discounted cumulative gain of binary relevance, best rank first.
fn dcg(hits: impl Iterator<Item = bool>) -> f64 {
    hits.enumerate()
        .filter(|(_, hit)| *hit)
        .map(|(rank, _)| 1.0 / (rank as f64 + 2.0).log2())
        .sum()
}

/// The set's markets in a fresh embedded database, with the key each was given.
struct Seeded {
    db: TestDatabase,
    markets: SqliteMarketRepository,
    keys: HashMap<MarketId, String>,
}

impl Seeded {
    async fn new(set: &EvaluationSet) -> Self {
        let db = TestDatabase::new().await;
        let markets = SqliteMarketRepository::new(db.pool());
        let creator_id = db.user("eval").await;
        let mut keys = HashMap::new();
        for market in &set.markets {
            let new = NewMarket {
                id: MarketId::new(),
                creator_id,
                name: MarketName::parse(&market.name).unwrap(),
                description: Description::parse(&market.description).unwrap(),
                status: MarketStatus::Open,
                volume: Volume::ZERO,
            };
            keys.insert(
                markets.create(new, &[]).await.unwrap().id,
                market.key.clone(),
            );
        }
        Self { db, markets, keys }
    }

    fn keys_of(&self, hits: Vec<ScoredSummary>) -> Vec<String> {
        hits.into_iter()
            .map(|hit| self.keys[&hit.market.id].clone())
            .collect()
    }

    /// Each query's results by the text search, the semantic search's fallback.
    async fn text_search(&self, set: &EvaluationSet) -> Vec<Vec<String>> {
        let mut found = Vec::new();
        for query in &set.queries {
            let query = SearchQuery::parse(&query.text).unwrap();
            let hits = self.markets.search_text(&query, limit()).await.unwrap();
            found.push(self.keys_of(hits));
        }
        found
    }

    /// Each query's results by semantic search with `embedder`, after the indexer has embedded
    /// every market with it.
    async fn semantic_search(
        &self,
        set: &EvaluationSet,
        embedder: impl EmbeddingProvider + Clone,
    ) -> Vec<Vec<String>> {
        let index = SqliteVectorIndex::new(self.db.pool());
        let indexer = IndexService::new(embedder.clone(), index.clone(), IndexPacing::default());
        let search = SearchService::new(self.markets.clone(), embedder, index);
        search.fit_dimensions().await.unwrap();
        while indexer.index_pending().await.unwrap() > 0 {}
        let mut found = Vec::new();
        for query in &set.queries {
            let query = SearchQuery::parse(&query.text).unwrap();
            let results = search.search(&query, limit()).await.unwrap();
            assert_eq!(
                results.mode,
                SearchMode::Semantic,
                "{:?}",
                results.fallback_cause
            );
            found.push(self.keys_of(results.hits));
        }
        found
    }
}

fn limit() -> SearchLimit {
    SearchLimit::new(DEPTH as u32).unwrap()
}

/// The model directory from `MARKETS_MODEL_DIR` (scripts/test.sh sets it). Fails, rather than
/// skips, when it is unset: an evaluation that silently scores nothing would pass.
fn model() -> MiniLmEmbedder {
    let dir = std::env::var_os("MARKETS_MODEL_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .expect("MARKETS_MODEL_DIR is not set: run `eval \"$(scripts/model.sh)\"` first");
    MiniLmEmbedder::load(&MiniLmSettings::new(dir)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_finds_by_meaning_what_shared_words_cannot() {
    let set = evaluation_set();
    let model_db = Seeded::new(&set).await;
    let hashing_db = Seeded::new(&set).await;
    let model = Scores::of(&set, &model_db.semantic_search(&set, model()).await);
    let hashing = Scores::of(
        &set,
        &hashing_db
            .semantic_search(&set, HashingEmbedder::default())
            .await,
    );
    let text = Scores::of(&set, &model_db.text_search(&set).await);

    println!(
        "\n{} markets, {} queries sharing no word with what they should find\n",
        set.markets.len(),
        set.queries.len()
    );
    println!("| searcher | recall@{DEPTH} | nDCG@{DEPTH} |\n|---|---:|---:|");
    for (name, scores) in [
        ("all-MiniLM-L6-v2 (in process)", &model),
        ("hashing embedder", &hashing),
        ("text search (fallback)", &text),
    ] {
        println!("| {name} | {:.3} | {:.3} |", scores.recall, scores.ndcg);
    }

    assert!(model.recall >= MODEL_RECALL_TARGET, "{model:?}");
    assert!(
        model.recall >= MODEL_OVER_HASHING_TARGET * hashing.recall,
        "model {model:?}, hashing {hashing:?}"
    );
}
