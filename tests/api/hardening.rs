//! Input hardening at the edge: duplicate JSON keys, deep nesting, NUL characters and
//! over-long request heads are all refused with a 4xx, never a 5xx or a silent drop.

use markets_domain::permission::Role;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::errors::post_raw;
use crate::helpers::{TestApp, error, header, invalid};

#[tokio::test]
async fn duplicate_keys_are_422_naming_the_key() {
    let app = TestApp::spawn().await;
    let register = r#"{"email": "ann@example.com", "password": "long enough",
        "display_name": "Ann", "email": "eve@example.com"}"#;
    let json = invalid(
        post_raw(&app, "/api/v1/auth/register", None, register).await,
        &["email"],
    )
    .await;
    assert!(
        json["details"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("more than once"))
    );
    // Nested, and in a key the handler never reads.
    let ann = app.user("ann", Role::User).await;
    let nested = r#"{"name": "Rain?", "description": "", "extra": {"k": 1, "k": 2}}"#;
    invalid(
        post_raw(&app, "/api/v1/markets", Some(&ann.token), nested).await,
        &["extra.k"],
    )
    .await;
}

#[tokio::test]
async fn nesting_too_deep_is_422_on_the_body() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let deep = format!(
        r#"{{"name": {}1{}, "description": ""}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let json = invalid(
        post_raw(&app, "/api/v1/markets", Some(&ann.token), &deep).await,
        &["body"],
    )
    .await;
    assert!(
        json["details"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nested deeper"))
    );
}

#[tokio::test]
async fn nul_characters_are_422_naming_each_field() {
    let app = TestApp::spawn().await;
    let register = json!({
        "email": "ann\u{0}@example.com",
        "password": "long enough",
        "display_name": "Ann\u{0}",
    });
    let path = "/api/v1/auth/register";
    let response = app.request(Method::POST, path, None, Some(register)).await;
    invalid(response, &["email", "display_name"]).await;

    let ann = app.user("ann", Role::User).await;
    let market = json!({"name": "Rain\u{0}?", "description": "wet\u{0}"});
    let response = app
        .request(
            Method::POST,
            "/api/v1/markets",
            Some(&ann.token),
            Some(market),
        )
        .await;
    invalid(response, &["name", "description"]).await;

    invalid(
        app.get("/api/v1/markets/search?query=ra%00in").await,
        &["query"],
    )
    .await;
}

#[tokio::test]
async fn an_over_long_header_is_400_in_the_envelope() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/api/v1/markets", app.base))
        .bearer_auth("a".repeat(10 * 1024))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    // Refused before any other middleware ran: not even the request id was read, so the
    // refusal carries a fresh one.
    let id = header(&response, "x-request-id").unwrap();
    assert_ne!(id, "caller-chosen-id");
    assert_eq!(
        header(&response, "x-content-type-options").unwrap(),
        "nosniff"
    );
    let json = error(response, 400, "bad_request").await;
    assert!(
        json["error"].as_str().unwrap().contains("authorization"),
        "{json}"
    );
}

/// Sends `head` on a fresh connection and returns the status line of the answer.
///
/// actix answers an oversized head before reading all of it, then closes; the bytes it left
/// unread make the kernel reset the connection. The answer arrives before the reset, so it is
/// read up to whichever comes first, and a write cut short by the reset is not a failure.
async fn status_line(app: &TestApp, head: &[u8]) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let _cut_short = stream.write_all(head).await;
    let mut answer = Vec::new();
    let _reset = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Past actix's own limits (96 headers, a 128 KiB head) the server answers a bare 431 before
/// any of our code runs, and closes the connection: still a 4xx the client can read, though
/// not in the envelope.
#[tokio::test]
async fn heads_past_actix_limits_get_a_bare_431() {
    let app = TestApp::spawn().await;
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let head = format!("GET /health/live HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    assert_eq!(
        status_line(&app, head.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );

    let huge = format!(
        "GET /health/live HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(140 * 1024)
    );
    assert_eq!(
        status_line(&app, huge.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}
