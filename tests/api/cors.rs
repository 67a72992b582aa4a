//! CORS: configured origins only, preflights answered before rate limits, 429s readable by
//! browsers.

use reqwest::{Method, Response};

use crate::helpers::TestApp;

const ALLOWED: &str = "https://app.example.com";

async fn app() -> TestApp {
    TestApp::spawn_configured(&[
        ("MARKETS__CORS__ALLOWED_ORIGINS", ALLOWED),
        ("MARKETS__RATE_LIMIT__SEARCH__LIMIT", "1"),
    ])
    .await
}

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(
            Method::OPTIONS,
            format!("{}/api/v1/markets/search", app.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

fn allowed_origin(response: &Response) -> Option<String> {
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn preflights_are_answered_for_configured_origins_only() {
    let app = app().await;
    let allowed = preflight(&app, ALLOWED).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed_origin(&allowed).as_deref(), Some(ALLOWED));
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("PATCH"), "{methods}");

    let refused = preflight(&app, "https://evil.example.net").await;
    assert_eq!(allowed_origin(&refused), None);
}

#[tokio::test]
async fn preflights_do_not_count_and_429s_carry_cors_headers() {
    let app = app().await;
    for _ in 0..3 {
        preflight(&app, ALLOWED).await;
    }
    let search = |app: &TestApp| {
        app.client
            .get(format!("{}/api/v1/markets/search?query=x", app.base))
            .header("origin", ALLOWED)
            .send()
    };
    let first = search(&app).await.unwrap();
    assert_eq!(first.status(), 200, "preflights used up the budget");
    assert_eq!(allowed_origin(&first).as_deref(), Some(ALLOWED));
    let limited = search(&app).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(allowed_origin(&limited).as_deref(), Some(ALLOWED));
    let exposed = limited.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in ["retry-after", "etag", "location", "idempotent-replayed"] {
        assert!(exposed.contains(name), "{name}: {exposed}");
    }
}

#[tokio::test]
async fn requests_without_an_origin_are_unaffected() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/markets").await;
    assert_eq!(response.status(), 200);
    assert_eq!(allowed_origin(&response), None);
}
