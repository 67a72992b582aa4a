//! `/users/me` and role changes.

use markets_domain::permission::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, body, error, invalid};

#[tokio::test]
async fn me_returns_the_caller_without_secrets() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let me = body(
        app.request(Method::GET, "/api/v1/users/me", Some(&ann.token), None)
            .await,
        200,
    )
    .await;
    assert_eq!(me["data"]["id"], ann.id.to_string());
    assert_eq!(me["data"]["email"], ann.email);
    assert_eq!(me["data"]["role"], "user");
    let mut keys: Vec<&String> = me["data"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["created_at", "display_name", "email", "id", "role"]);
    error(app.get("/api/v1/users/me").await, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_role_change_applies_on_the_next_request() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", Role::Admin).await;
    let ann = app.user("ann", Role::User).await;
    let path = format!("/api/v1/users/{}/role", ann.id);

    let denied = app
        .request(
            Method::PUT,
            &path,
            Some(&ann.token),
            Some(json!({"role": "admin"})),
        )
        .await;
    error(denied, 403, "permission_denied").await;

    let changed = app
        .request(
            Method::PUT,
            &path,
            Some(&admin.token),
            Some(json!({"role": "moderator"})),
        )
        .await;
    assert_eq!(body(changed, 200).await["data"]["role"], "moderator");

    // Ann's token still says `user`, but her next request acts as a moderator.
    let me = app
        .request(Method::GET, "/api/v1/users/me", Some(&ann.token), None)
        .await;
    assert_eq!(body(me, 200).await["data"]["role"], "moderator");
}

#[tokio::test]
async fn only_admins_change_roles_and_inputs_are_checked() {
    let app = TestApp::spawn().await;
    let admin = app.user("root", Role::Admin).await;
    let moderator = app.user("mod", Role::Moderator).await;
    let ann = app.user("ann", Role::User).await;
    let path = format!("/api/v1/users/{}/role", ann.id);
    let promote = || Some(json!({"role": "admin"}));

    error(
        app.request(Method::PUT, &path, None, promote()).await,
        401,
        "unauthorized",
    )
    .await;
    error(
        app.request(Method::PUT, &path, Some(&moderator.token), promote())
            .await,
        403,
        "permission_denied",
    )
    .await;
    let me = app
        .request(Method::GET, "/api/v1/users/me", Some(&ann.token), None)
        .await;
    assert_eq!(body(me, 200).await["data"]["role"], "user");

    let unknown = format!("/api/v1/users/{}/role", uuid::Uuid::new_v4());
    error(
        app.request(Method::PUT, &unknown, Some(&admin.token), promote())
            .await,
        404,
        "not_found",
    )
    .await;
    invalid(
        app.request(
            Method::PUT,
            &path,
            Some(&admin.token),
            Some(json!({"role": "superuser"})),
        )
        .await,
        &["role"],
    )
    .await;
    invalid(
        app.request(
            Method::PUT,
            "/api/v1/users/not-a-uuid/role",
            Some(&admin.token),
            promote(),
        )
        .await,
        &["id"],
    )
    .await;

    let changed = app
        .request(Method::PUT, &path, Some(&admin.token), promote())
        .await;
    let changed = body(changed, 200).await;
    assert_eq!(changed["data"]["role"], "admin");
    assert_eq!(changed["data"]["id"], ann.id.to_string());
    assert_eq!(changed["data"]["email"], ann.email);
}
