//! Idempotent create (v1.1): `Idempotency-Key` on `POST /api/v1/markets`.

use futures_util::future::join_all;
use markets_domain::jobs::JobKind;
use markets_domain::permission::Role;
use reqwest::Response;
use serde_json::{Value, json};
use std::time::Duration;

use crate::helpers::{TestApp, TestUser, body, error, header, invalid};

async fn post(app: &TestApp, user: &TestUser, key: Option<&str>, market: &Value) -> Response {
    let mut request = app
        .client
        .post(format!("{}/api/v1/markets", app.base))
        .bearer_auth(&user.token)
        .json(market);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

/// The total of `GET /api/v1/markets`.
async fn markets(app: &TestApp) -> u64 {
    body(app.get("/api/v1/markets").await, 200).await["meta"]["total"]
        .as_u64()
        .unwrap()
}

/// How many jobs of each kind, notifications and embeddings, are queued for market `id`
/// (claiming every due job).
async fn queued(app: &TestApp, id: &str) -> (usize, usize) {
    let jobs = app.components.infra.jobs();
    let mut counts = [0; 2];
    let kinds = [JobKind::NotifyMarketCreated, JobKind::IndexMarketEmbedding];
    for (count, kind) in counts.iter_mut().zip(kinds) {
        let claimed = jobs
            .claim(kind, 1000, Duration::from_secs(60))
            .await
            .unwrap();
        *count = claimed
            .iter()
            .filter(|job| job.market_id().to_string() == id)
            .count();
    }
    (counts[0], counts[1])
}

#[tokio::test]
async fn a_repeated_key_replays_the_first_answer_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = json!({"name": "Rain?", "description": "", "volume": 1.5});
    let first = post(&app, &ann, Some("order-1"), &market).await;
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let (location, tag) = (header(&first, "location"), header(&first, "etag"));
    let first = body(first, 201).await;
    // The same market, spelled otherwise, after the market changed.
    let id = first["data"]["id"].as_str().unwrap();
    let path = format!("/api/v1/markets/{id}");
    let patch = json!({"status": "closed"});
    let patched = app.request(reqwest::Method::PATCH, &path, Some(&ann.token), Some(patch));
    body(patched.await, 200).await;
    let respelled = json!({"volume": "1.50", "description": "", "name": " Rain? "});
    let again = post(&app, &ann, Some("order-1"), &respelled).await;
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(header(&again, "location"), location);
    assert_eq!(header(&again, "etag"), tag);
    assert_eq!(body(again, 201).await, first, "the first answer again");
    assert_eq!(markets(&app).await, 1);

    let other = json!({"name": "Snow?", "description": ""});
    let reused = post(&app, &ann, Some("order-1"), &other).await;
    error(reused, 422, "idempotency_key_reused").await;
    let bob = app.user("bob", Role::User).await;
    let bobs = post(&app, &bob, Some("order-1"), &other).await;
    assert_eq!(
        header(&bobs, "idempotent-replayed"),
        None,
        "keys are per caller"
    );
    body(bobs, 201).await;
    assert_eq!(markets(&app).await, 2);
}

#[tokio::test]
async fn keys_must_be_printable_ascii_up_to_255_characters() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = json!({"name": "Rain?", "description": ""});
    for bad in ["".to_owned(), "k".repeat(256)] {
        invalid(
            post(&app, &ann, Some(&bad), &market).await,
            &["Idempotency-Key"],
        )
        .await;
    }
    let longest = "k".repeat(255);
    body(post(&app, &ann, Some(&longest), &market).await, 201).await;
    assert_eq!(markets(&app).await, 1);
}

#[tokio::test]
async fn twenty_concurrent_posts_with_one_key_make_one_market_and_one_notification() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = json!({"name": "Racing", "description": ""});
    let attempts = (0..20).map(|_| post(&app, &ann, Some("racing"), &market));
    let responses = join_all(attempts).await;
    let mut created = Vec::new();
    let (mut replays, mut in_flight) = (0, 0);
    for response in responses {
        let replayed = header(&response, "idempotent-replayed").is_some();
        match response.status().as_u16() {
            201 => {
                let json = body(response, 201).await;
                if replayed {
                    replays += 1;
                } else {
                    created.push(json);
                }
            }
            409 => {
                error(response, 409, "conflict").await;
                in_flight += 1;
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(created.len(), 1, "{replays} replays, {in_flight} in flight");
    assert_eq!(replays + in_flight, 19);
    assert_eq!(markets(&app).await, 1);
    let id = created[0]["data"]["id"].as_str().unwrap();
    assert_eq!(
        queued(&app, id).await,
        (1, 1),
        "one notification, one embedding"
    );
}
