//! `/users/me` and role changes.

use markets_domain::permission::Role;
use markets_domain::user::UserId;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, USER_KEYS, body, error, invalid, keys};

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
    assert_eq!(keys(&me["data"]), USER_KEYS);
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

/// Two admins demoting each other at once: one succeeds; the other gets 409 if it passed the
/// permission check before the first change committed, 403 if it was already demoted by then
/// (the repository contract races the changes themselves). The admin left cannot demote itself.
#[tokio::test]
async fn the_last_admin_cannot_be_demoted_even_by_a_race() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::Admin).await;
    let bob = app.user("bob", Role::Admin).await;
    let (by_ann, by_bob) = tokio::join!(
        demote(&app, &ann.token, bob.id),
        demote(&app, &bob.token, ann.id)
    );
    let (left, loser) = if by_ann.status() == 200 {
        (&ann, by_bob)
    } else {
        (&bob, by_ann)
    };
    assert!(
        matches!(loser.status().as_u16(), 403 | 409),
        "{}",
        loser.status()
    );
    let own = demote(&app, &left.token, left.id).await;
    error(own, 409, "conflict").await;
    let me = app
        .request(Method::GET, "/api/v1/users/me", Some(&left.token), None)
        .await;
    assert_eq!(body(me, 200).await["data"]["role"], "admin");
}

async fn demote(app: &TestApp, token: &str, whom: UserId) -> reqwest::Response {
    let path = format!("/api/v1/users/{whom}/role");
    let role = Some(json!({"role": "user"}));
    app.request(Method::PUT, &path, Some(token), role).await
}
