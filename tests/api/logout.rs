//! Logout revokes the presented token until it would have expired, on every instance, through
//! a Redis outage too; the user's other tokens keep working.

use markets_domain::permission::Role;
use markets_redis::testing::{PrivateRedis, shared_settings};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, TestUser, body};

async fn me(app: &TestApp, token: &str) -> StatusCode {
    app.request(Method::GET, "/api/v1/users/me", Some(token), None)
        .await
        .status()
}

async fn logout(app: &TestApp, token: &str) -> StatusCode {
    app.request(Method::POST, "/api/v1/auth/logout", Some(token), None)
        .await
        .status()
}

/// The token's `jti` claim.
fn jti(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&json).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

async fn second_token(app: &TestApp, user: &TestUser) -> String {
    let login = body(app.login(&user.email, "password123").await, 200).await;
    login["data"]["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_logged_out_token_is_refused_everywhere_and_other_tokens_still_work() {
    let redis = shared_settings();
    let one = TestApp::spawn_with(redis.clone(), &[]).await;
    let database = one.store.url();
    let two = TestApp::spawn_with(redis, &[("DATABASE_URL", &database)]).await;
    let ann = one.user("ann", Role::User).await;
    let other = second_token(&one, &ann).await;

    assert_eq!(logout(&one, &ann.token).await, StatusCode::NO_CONTENT);
    assert_eq!(me(&one, &ann.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(&two, &ann.token).await,
        StatusCode::UNAUTHORIZED,
        "second instance"
    );
    assert_eq!(
        me(&two, &other).await,
        StatusCode::OK,
        "other tokens keep working"
    );
    assert_eq!(
        logout(&one, &ann.token).await,
        StatusCode::UNAUTHORIZED,
        "already revoked"
    );
}

#[tokio::test]
async fn revocations_hold_through_a_redis_outage() {
    let mut redis = PrivateRedis::start();
    let app = TestApp::spawn_with(redis.settings(), &[]).await;
    let ann = app.user("ann", Role::User).await;
    let before = second_token(&app, &ann).await;
    let during = second_token(&app, &ann).await;

    assert_eq!(logout(&app, &before).await, StatusCode::NO_CONTENT);
    redis.stop();
    assert_eq!(
        me(&app, &before).await,
        StatusCode::UNAUTHORIZED,
        "the database remembers"
    );
    assert_eq!(
        me(&app, &ann.token).await,
        StatusCode::OK,
        "nobody is locked out"
    );

    // Logged out while Redis is down: refused now, and still refused once Redis is back.
    assert_eq!(logout(&app, &during).await, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, &during).await, StatusCode::UNAUTHORIZED);
    redis.restart();
    // The restarted Redis is empty: both revocations must reach it again (the earlier one
    // refilled on reconnect, the later one pushed by its retry).
    let prefix = app.redis().key_prefix.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    for token in [&before, &during] {
        let key = format!("{prefix}revoked:{}", jti(token));
        while redis.cli(&["EXISTS", &key]).trim() != "1" {
            assert!(
                Instant::now() < deadline,
                "{key} never reached the restarted Redis"
            );
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(me(&app, &before).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &during).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &ann.token).await, StatusCode::OK);
}

/// A Redis that answers but refuses the revocation (out of memory, or a read-only replica after
/// a failover) would keep accepting the token on every instance: the logout says 503, and its
/// retry succeeds once Redis takes writes again.
#[tokio::test]
async fn a_revocation_redis_refuses_is_a_retryable_503_not_a_204() {
    let redis = PrivateRedis::start();
    let app = TestApp::spawn_with(redis.settings(), &[]).await;
    let ann = app.user("ann", Role::User).await;
    let refusals: [(&[&str], &[&str]); 2] = [
        (
            &["CONFIG", "SET", "maxmemory", "1"],
            &["CONFIG", "SET", "maxmemory", "0"],
        ),
        (
            &["REPLICAOF", "127.0.0.1", "1"],
            &["REPLICAOF", "NO", "ONE"],
        ),
    ];
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    for (refuse, accept) in refusals {
        let token = second_token(&app, &ann).await;
        redis.cli(refuse);
        let response = app
            .request(Method::POST, "/api/v1/auth/logout", Some(&token), None)
            .await;
        assert!(
            crate::helpers::header(&response, "retry-after").is_some(),
            "{refuse:?}: no Retry-After"
        );
        crate::helpers::error(response, 503, "service_unavailable").await;
        redis.cli(accept);
        // The client's retry revokes it (204), unless the background retry has already pushed
        // the revocation into Redis (then the token is refused: 401). Either way it holds now.
        let retry = logout(&app, &token).await;
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::UNAUTHORIZED].contains(&retry),
            "{refuse:?}: retry answered {retry}"
        );
        assert_eq!(
            me(&app, &token).await,
            StatusCode::UNAUTHORIZED,
            "{refuse:?}"
        );
    }
    assert_eq!(me(&app, &ann.token).await, StatusCode::OK);
}
