//! Semantic search end to end on pgvector, and its fallback when the embedding provider fails.

use markets_domain::permission::Role;
use markets_redis::testing::shared_settings;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TestApp, body};

async fn search(app: &TestApp, query: &str) -> (String, Value) {
    let response = app
        .client
        .get(format!("{}/api/v1/markets/search?query={query}", app.base))
        // A hung request fails the test instead of hanging it.
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let mode = response.headers()["x-search-mode"]
        .to_str()
        .unwrap()
        .to_owned();
    (mode, body(response, 200).await)
}

fn names(json: &Value) -> Vec<&str> {
    json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["name"].as_str().unwrap())
        .collect()
}

async fn seed(app: &TestApp) -> Vec<Value> {
    let ann = app.user("ann", Role::User).await;
    let mut created = Vec::new();
    for (name, description) in [
        (
            "Quarterly earnings beat",
            "Will the company beat analyst estimates?",
        ),
        (
            "Marathon record in Berlin",
            "A new world record at the Berlin marathon",
        ),
        (
            "Volcanic eruption in Iceland",
            "Will Reykjanes erupt again before summer?",
        ),
        ("Election turnout", "Will turnout exceed sixty percent?"),
    ] {
        let market = app.market(&ann, json!({"name": name, "description": description}));
        created.push(market.await);
    }
    created
}

#[tokio::test]
async fn a_distinctive_phrase_finds_its_market_first() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    app.settle().await;
    let (mode, json) = search(&app, "volcanic%20eruption%20Iceland").await;
    assert_eq!(mode, "semantic");
    assert_eq!(names(&json)[0], "Volcanic eruption in Iceland", "{json}");
    let scores: Vec<f64> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["score"].as_f64().unwrap())
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "descending: {scores:?}"
    );
}

#[tokio::test]
async fn deleted_markets_vanish_from_results() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    app.settle().await;
    let admin = app.user("root", Role::Admin).await;
    let marathon = created[1]["id"].as_str().unwrap();
    let path = format!("/api/v1/markets/{marathon}");
    let deleted = app
        .request(Method::DELETE, &path, Some(&admin.token), None)
        .await;
    assert_eq!(deleted.status(), 204);
    let (_, json) = search(&app, "marathon%20record%20Berlin").await;
    assert!(
        !names(&json).contains(&"Marathon record in Berlin"),
        "{json}"
    );
}

#[tokio::test]
async fn renamed_markets_are_found_by_their_new_name_once_reindexed() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    app.settle().await;
    let owner = app.user("owner", Role::Moderator).await;
    let turnout = created[3]["id"].as_str().unwrap();
    let rename = json!({"name": "Comet visible from Lisbon", "description": "Astronomy"});
    let path = format!("/api/v1/markets/{turnout}");
    body(
        app.request(Method::PATCH, &path, Some(&owner.token), Some(rename))
            .await,
        200,
    )
    .await;
    app.settle().await;
    let (mode, json) = search(&app, "comet%20Lisbon").await;
    assert_eq!(mode, "semantic");
    assert_eq!(names(&json)[0], "Comet visible from Lisbon", "{json}");
}

/// What `scripts/start.sh` serves with no API key: the provider left at `auto`, the model
/// provisioned. A query sharing no word with the market it should find finds it first.
#[tokio::test]
async fn with_the_model_provisioned_search_finds_markets_by_meaning() {
    let model_dir = std::env::var("MARKETS_MODEL_DIR")
        .expect("MARKETS_MODEL_DIR is not set: run `eval \"$(scripts/model.sh)\"` first");
    let app = TestApp::spawn_configured(&[("MARKETS_MODEL_DIR", &model_dir)]).await;
    seed(&app).await;
    let bob = app.user("bob", Role::User).await;
    let bitcoin = json!({"name": "Will Bitcoin exceed $100k?", "description": "BTC on Coinbase."});
    app.market(&bob, bitcoin).await;
    app.settle().await;
    let (mode, json) = search(&app, "cryptocurrency").await;
    assert_eq!(mode, "semantic");
    assert_eq!(names(&json)[0], "Will Bitcoin exceed $100k?", "{json}");
}

/// An app whose embedding provider is a mock answering every request with `reply`; the mock
/// server is returned too, since it stops when dropped.
async fn app_with_provider(
    reply: ResponseTemplate,
    query_timeout_ms: &str,
) -> (TestApp, MockServer) {
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(reply)
        .mount(&provider)
        .await;
    let base_url = format!("{}/v1", provider.uri());
    let app = TestApp::spawn_with(
        shared_settings(),
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", &base_url),
            ("MARKETS__SEARCH__QUERY_TIMEOUT_MS", query_timeout_ms),
        ],
    )
    .await;
    seed(&app).await;
    (app, provider)
}

#[tokio::test]
async fn a_failing_provider_degrades_to_text_search() {
    let (app, _provider) = app_with_provider(ResponseTemplate::new(500), "300").await;
    let (mode, json) = search(&app, "eruption").await;
    assert_eq!(mode, "fallback");
    assert_eq!(names(&json), ["Volcanic eruption in Iceland"]);
    let ready = body(app.get("/health/ready").await, 200).await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["embeddings"], "down");
}

#[tokio::test]
async fn a_hanging_provider_degrades_within_the_query_budget() {
    let hang = ResponseTemplate::new(200).set_delay(Duration::from_secs(30));
    let (app, _provider) = app_with_provider(hang, "200").await;
    // The client gives up after 5 s; the provider would answer after 30 s.
    let (mode, json) = search(&app, "marathon").await;
    assert_eq!(mode, "fallback");
    assert_eq!(names(&json), ["Marathon record in Berlin"]);
}
