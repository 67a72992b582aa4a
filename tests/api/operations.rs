//! Operations: the metrics scrape, and readiness following the database down and back up.

use markets_domain::permission::Role;
use markets_redis::testing::shared_settings;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{TestApp, body, capture_logs, error, header, log_lines};

#[tokio::test]
async fn a_scrape_shows_traffic_by_route_pattern() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Scraped", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();
    app.get(&format!("/api/v1/markets/{id}")).await;
    app.get("/api/v1/markets/search?query=scraped").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="GET",route="/api/v1/markets/{id}",status="200"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/api/v1/markets",status="201""#,
        "db_pool_connections{state=\"max\"}",
        "cache_requests_total{result=\"hit\"}",
        "search_requests_total{mode=\"semantic\"}",
        "build_info{version=",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains(id), "a raw id became a label");
}

/// A TCP proxy to PostgreSQL that a test can cut and restore, to take the database away from
/// one app without touching the server the other tests use.
struct Cable {
    port: u16,
    connected: watch::Sender<bool>,
}

impl Cable {
    async fn to(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connected, state) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped at once: the app sees the connection fail
                }
                let (target, mut state) = (target.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !up) => {}
                    }
                });
            }
        });
        Self { port, connected }
    }

    fn cut(&self) {
        self.connected.send_replace(false);
    }

    fn restore(&self) {
        self.connected.send_replace(true);
    }
}

async fn readiness_until(app: &TestApp, status: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = app.get("/health/ready").await;
        if response.status().as_u16() == status || Instant::now() > deadline {
            return body(response, status).await;
        }
    }
}

#[tokio::test]
async fn readiness_follows_the_database_out_and_back() {
    let (app, cable, _database) = behind_a_cable().await;
    assert_eq!(readiness_until(&app, 200).await["status"], "ok");

    cable.cut();
    let down = readiness_until(&app, 503).await;
    assert_eq!(down["status"], "unavailable");
    assert_eq!(down["checks"]["database"], "down");
    // Like every 503 (v1.1 "Errors"), it says when to ask again.
    let again = app.get("/health/ready").await;
    assert_eq!(again.status(), 503);
    assert_eq!(header(&again, "retry-after").as_deref(), Some("5"));

    cable.restore();
    assert_eq!(readiness_until(&app, 200).await["status"], "ok");
}

/// The app on its own database through a [`Cable`], with short database timeouts.
async fn behind_a_cable() -> (TestApp, Cable, markets_postgres::testing::TestDatabase) {
    let database = markets_postgres::testing::TestDatabase::new().await;
    let url = url::Url::parse(secrecy::ExposeSecret::expose_secret(
        &database.settings().url,
    ))
    .unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let cable = Cable::to(target).await;
    let mut through_cable = url.clone();
    through_cable.set_port(Some(cable.port)).unwrap();
    let app = TestApp::spawn_with(
        shared_settings(),
        &[
            ("DATABASE_URL", through_cable.as_str()),
            ("MARKETS__DATABASE__WAIT_TIMEOUT_MS", "300"),
            ("MARKETS__DATABASE__CONNECT_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    (app, cable, database)
}

#[tokio::test]
async fn a_database_outage_is_one_error_line_and_a_warning_per_request() {
    const REQUESTS: usize = 8;
    capture_logs();
    let (app, cable, _database) = behind_a_cable().await;
    assert_eq!(app.get("/api/v1/markets").await.status(), 200);
    let run = uuid::Uuid::new_v4().simple().to_string();

    cable.cut();
    for n in 0..REQUESTS {
        let response = app
            .client
            .get(format!("{}/api/v1/markets", app.base))
            .header("x-request-id", format!("outage-{run}-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(header(&response, "retry-after").as_deref(), Some("5"));
    }
    let ours: Vec<Value> = log_lines()
        .into_iter()
        .filter(|line| {
            line["span"]["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("outage-{run}-")))
        })
        .collect();
    let count = |level: &str| ours.iter().filter(|line| line["level"] == level).count();
    assert_eq!(count("ERROR"), 1, "{ours:#?}");
    assert_eq!(count("WARN"), REQUESTS, "{ours:#?}");
    let first = ours.iter().find(|line| line["level"] == "ERROR").unwrap();
    assert_eq!(first["message"], "database unavailable: outage begins");
    assert_eq!(first["span"]["request_id"], format!("outage-{run}-0"));
    assert!(ours.iter().all(|line| line["service"] == "database"));
    assert!(
        ours.iter().all(|line| line["cause"].is_string()),
        "{ours:#?}"
    );
    cable.restore();
}

#[tokio::test]
async fn invented_methods_share_one_label_and_add_no_series() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    for n in 0..1000 {
        let method = reqwest::Method::from_bytes(format!("JUNK{n}").as_bytes()).unwrap();
        let url = format!("{}/api/v1/markets", app.base);
        let response = client.request(method, url).send().await.unwrap();
        assert_eq!(response.status(), 405);
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    let standard = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    let mut labels: Vec<&str> = text
        .split("method=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    labels.sort_unstable();
    labels.dedup();
    assert!(
        labels.iter().all(|label| standard.contains(label)),
        "a client-chosen method became a label: {labels:?}"
    );
    assert!(labels.contains(&"other"), "{labels:?}");
    assert!(!text.contains("JUNK"), "a raw method reached /metrics");
}

/// With `metrics.bind_addr`, `/metrics` is served on its own listener only: the public one
/// answers 404, and the metrics listener serves nothing but `/metrics`.
#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let app = TestApp::spawn_configured(&[("MARKETS__METRICS__BIND_ADDR", "127.0.0.1:0")]).await;
    crate::helpers::error(app.get("/metrics").await, 404, "not_found").await;
    let metrics = app.metrics_base.clone().unwrap();
    let scrape = app
        .client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("build_info"));
    for path in ["/health/live", "/api/v1/markets", "/openapi.json"] {
        let response = app
            .client
            .get(format!("{metrics}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path} on the metrics listener");
    }
    assert_eq!(app.get("/health/live").await.status(), 200);
}

/// The `src` and `href` values of `html`.
fn references(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| html.split(attribute).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn docs_are_served_with_every_asset_by_the_service_itself() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(header(&moved, "location").as_deref(), Some("/docs/"));
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").is_some_and(|t| t.starts_with("text/html")));
    let html = page.text().await.unwrap();
    let assets = references(&html);
    assert!(
        assets.iter().any(|a| a.ends_with("swagger-ui-bundle.js")),
        "{html}"
    );
    for asset in assets {
        assert!(
            !asset.contains("//") && !asset.starts_with('/'),
            "{asset} is not an asset of /docs/"
        );
        let response = app
            .get(&format!("/docs/{}", asset.trim_start_matches("./")))
            .await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(
        !initializer.contains("http://") && !initializer.contains("https://"),
        "{initializer}"
    );
    assert!(
        initializer.contains("\"validatorUrl\": \"none\"") || initializer.contains("validatorUrl"),
        "{initializer}"
    );
    error(app.get("/docs/no-such-asset.js").await, 404, "not_found").await;
}
