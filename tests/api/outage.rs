//! The database down: requests that need it answer 503 in the envelope, never hang or 500.

use markets_app::settings::Settings;
use markets_app::startup::Application;
use markets_app::wiring::Components;
use markets_redis::testing::shared_settings;
use serde_json::json;
use std::collections::HashMap;

use crate::helpers::{SECRET, body, error};

#[tokio::test]
async fn an_unreachable_database_is_503_service_unavailable() {
    // Port 1 on loopback: nothing listens, connections are refused at once. The cache is the
    // shared test Redis under a prefix of this test's own: a cached market would be served.
    let redis = shared_settings();
    let vars: HashMap<String, String> = [
        ("REDIS_URL", redis.url.as_str()),
        ("MARKETS__REDIS__KEY_PREFIX", redis.key_prefix.as_str()),
        ("APP_ENV", "test"),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/markets"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", SECRET),
        ("MARKETS__DATABASE__WAIT_TIMEOUT_MS", "300"),
        ("MARKETS__DATABASE__CONNECT_TIMEOUT_MS", "300"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = Settings::load_from(&vars).unwrap();
    let components = Components::build(&settings).await.unwrap();
    let application = Application::build(&settings, &components).unwrap();
    let base = format!("http://{}", application.address());
    let handle = application.handle();
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();

    for path in [
        "/api/v1/markets",
        &format!("/api/v1/markets/{}", uuid::Uuid::new_v4()),
        "/api/v1/markets/search?query=rain",
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let json = error(response, 503, "service_unavailable").await;
        assert_eq!(json["error"], "database is currently unavailable", "{path}");
    }
    let register = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "a@example.com", "password": "password1", "display_name": "A"}))
        .send()
        .await
        .unwrap();
    error(register, 503, "service_unavailable").await;

    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    let ready = body(ready, 503).await;
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["checks"]["database"], "down");
    let live = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    body(live, 200).await;
    handle.stop(false).await;
}
