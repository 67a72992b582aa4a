//! Conditional requests on a market (v1.1): a strong `ETag` that changes with every change,
//! 304 on `If-None-Match`, 412 on a stale `If-Match`, checked atomically with the write.

use futures_util::future::join_all;
use markets_domain::permission::Role;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, body, error, header};

/// `method path` with a bearer token, an optional JSON body and extra headers.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    user: Option<&TestUser>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(user) = user {
        request = request.bearer_auth(&user.token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn etag(response: &Response) -> String {
    let tag = header(response, "etag").expect("an ETag");
    assert!(tag.starts_with('"') && tag.ends_with('"'), "strong: {tag}");
    tag
}

#[tokio::test]
async fn a_market_has_a_strong_etag_that_changes_with_it_and_answers_if_none_match() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Rain?", "description": ""}))
        .await;
    let path = format!("/api/v1/markets/{}", market["id"].as_str().unwrap());
    let first = app.get(&path).await;
    let tag = etag(&first);
    let again = app.get(&path).await;
    assert_eq!(header(&again, "x-cache").as_deref(), Some("HIT"));
    assert_eq!(etag(&again), tag, "the cached copy has the same tag");

    let unchanged = send(
        &app,
        Method::GET,
        &path,
        None,
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(etag(&unchanged), tag);
    assert!(unchanged.bytes().await.unwrap().is_empty(), "no body");
    let weak = format!("W/{tag}");
    let listed = format!("\"other\", {weak}");
    let unchanged = send(
        &app,
        Method::GET,
        &path,
        None,
        None,
        &[("if-none-match", &listed)],
    )
    .await;
    assert_eq!(
        unchanged.status(),
        304,
        "weak comparison, any tag of the list"
    );

    let patch = json!({"volume": 5});
    let changed = send(&app, Method::PATCH, &path, Some(&ann), Some(patch), &[]).await;
    let new_tag = etag(&changed);
    assert_ne!(new_tag, tag);
    body(changed, 200).await;
    let stale = send(
        &app,
        Method::GET,
        &path,
        None,
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(etag(&stale), new_tag);
    assert_eq!(body(stale, 200).await["data"]["volume"], 5.0);
}

#[tokio::test]
async fn a_stale_if_match_changes_and_deletes_nothing() {
    let app = TestApp::spawn().await;
    let moderator = app.user("mod", Role::Moderator).await;
    let market = app
        .market(&moderator, json!({"name": "Rain?", "description": ""}))
        .await;
    let path = format!("/api/v1/markets/{}", market["id"].as_str().unwrap());
    let tag = etag(&app.get(&path).await);
    let rename = |name: &str| Some(json!({ "name": name }));
    let renamed = send(
        &app,
        Method::PATCH,
        &path,
        Some(&moderator),
        rename("One"),
        &[("if-match", &tag)],
    )
    .await;
    let current = etag(&renamed);
    body(renamed, 200).await;

    let stale = send(
        &app,
        Method::PATCH,
        &path,
        Some(&moderator),
        rename("Two"),
        &[("if-match", &tag)],
    )
    .await;
    error(stale, 412, "precondition_failed").await;
    let stale = send(
        &app,
        Method::DELETE,
        &path,
        Some(&moderator),
        None,
        &[("if-match", &tag)],
    )
    .await;
    error(stale, 412, "precondition_failed").await;
    let weak = format!("W/{current}");
    let weak = send(
        &app,
        Method::DELETE,
        &path,
        Some(&moderator),
        None,
        &[("if-match", &weak)],
    )
    .await;
    error(weak, 412, "precondition_failed").await;
    let kept = body(app.get(&path).await, 200).await;
    assert_eq!(kept["data"]["name"], "One", "nothing changed");

    let any = send(
        &app,
        Method::PATCH,
        &path,
        Some(&moderator),
        rename("Three"),
        &[("if-match", "*")],
    )
    .await;
    let current = etag(&any);
    body(any, 200).await;
    let deleted = send(
        &app,
        Method::DELETE,
        &path,
        Some(&moderator),
        None,
        &[("if-match", &current)],
    )
    .await;
    assert_eq!(deleted.status(), 204);
    error(app.get(&path).await, 404, "not_found").await;
}

#[tokio::test]
async fn of_concurrent_changes_with_one_if_match_exactly_one_applies() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Rain?", "description": ""}))
        .await;
    let path = format!("/api/v1/markets/{}", market["id"].as_str().unwrap());
    let tag = etag(&app.get(&path).await);
    let condition = [("if-match", tag.as_str())];
    let attempts = (0..8).map(|i| {
        let patch = Some(json!({ "volume": i }));
        send(&app, Method::PATCH, &path, Some(&ann), patch, &condition)
    });
    let statuses: Vec<u16> = join_all(attempts)
        .await
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        7,
        "{statuses:?}"
    );
    let stored = app.get(&path).await;
    assert_ne!(etag(&stored), tag, "one version on");
}
