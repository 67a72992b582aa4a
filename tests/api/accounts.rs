//! Accounts through their emails, read from a local SMTP sink: registration sends a
//! verification link, market notifications reach verified addresses only, a password reset
//! link sets a new password once and revokes the user's earlier tokens on every instance.

use chrono::{TimeDelta, Utc};
use markets_domain::auth::{NewAccountToken, OneTimeToken, TokenPurpose};
use markets_domain::jobs::JobQueue;
use markets_domain::permission::Role;
use markets_smtp::testing::{ReceivedMail, SmtpSink};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use crate::helpers::{TestApp, TestUser, body, error};

/// Where the links point.
const PUBLIC_URL: &str = "http://markets.test";

/// An app (over the database at `database`, if given) that sends its mail to `sink`.
async fn app_mailing(sink: &SmtpSink, database: Option<&str>) -> TestApp {
    let port = sink.port().to_string();
    let mut vars = vec![
        ("MARKETS__NOTIFY__BACKEND", "smtp"),
        ("MARKETS__NOTIFY__SMTP__PORT", port.as_str()),
        ("MARKETS__NOTIFY__PUBLIC_URL", PUBLIC_URL),
    ];
    vars.extend(database.map(|url| ("DATABASE_URL", url)));
    TestApp::spawn_configured(&vars).await
}

/// The mails to `to` so far.
fn to(messages: &[ReceivedMail], to: &str) -> Vec<ReceivedMail> {
    messages
        .iter()
        .filter(|mail| mail.to.iter().any(|rcpt| rcpt == to))
        .cloned()
        .collect()
}

/// Waits for a mail to `address` with `subject`, and returns the token of the link `page`
/// in its plain-text part.
async fn link_token(sink: &SmtpSink, address: &str, subject: &str, page: &str) -> String {
    let is_it = |mail: &ReceivedMail| mail.header("Subject").as_deref() == Some(subject);
    let messages = within(sink.wait_for(|messages| to(messages, address).iter().any(is_it))).await;
    let mail = to(&messages, address).into_iter().find(is_it).unwrap();
    let text = mail.part("text/plain").unwrap().body();
    let html = mail.part("text/html").unwrap().body();
    let prefix = format!("{PUBLIC_URL}/{page}?token=");
    let token: String = text
        .split_once(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {text}"))
        .1
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(token.len(), 64, "{text}");
    assert!(
        html.contains(&format!("href=\"{prefix}{token}\"")),
        "{html}"
    );
    token
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    app.request(Method::POST, path, token, Some(body)).await
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/verify-email",
        None,
        json!({ "token": token }),
    )
    .await
}

/// `future`'s output; panics if it takes over 30 s (a mail that never comes).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("waited 30 s")
}

/// Waits until no job is queued or running: every notification has been sent or skipped.
async fn drained(app: &TestApp) {
    within(drain(app)).await;
}

async fn drain(app: &TestApp) {
    let jobs = &app.components.infra.ports().jobs;
    let mut pause = Duration::from_millis(1);
    loop {
        let stats = jobs.stats(Duration::from_secs(1)).await.unwrap();
        if stats.iter().all(|kind| kind.queued + kind.running == 0) {
            return;
        }
        // Polling the queue's own state, not waiting for time to pass.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_verified_address_gets_notifications_and_an_unverified_one_none() {
    let sink = SmtpSink::start().await;
    let app = app_mailing(&sink, None).await;
    let _worker = app.run_worker();
    let ann = app.user("ann", Role::User).await;
    let me = app
        .request(Method::GET, "/api/v1/users/me", Some(&ann.token), None)
        .await;
    assert_eq!(body(me, 200).await["data"]["email_verified"], false);
    let token = link_token(
        &sink,
        &ann.email,
        "Confirm your email address",
        "verify-email",
    )
    .await;

    app.market(
        &ann,
        json!({ "name": "Before verifying", "description": "" }),
    )
    .await;
    drained(&app).await;
    let live = |mail: &ReceivedMail| {
        mail.header("Subject")
            .is_some_and(|subject| subject.contains("is live"))
    };
    assert!(
        !to(&sink.messages(), &ann.email).iter().any(live),
        "no notification to an unverified address"
    );

    let verified = body(verify(&app, &token).await, 200).await;
    assert_eq!(verified["data"]["email_verified"], true);
    assert_eq!(verified["data"]["id"], ann.id.to_string());
    error(verify(&app, &token).await, 400, "bad_request").await;
    error(verify(&app, &"0".repeat(64)).await, 400, "bad_request").await;

    app.market(
        &ann,
        json!({ "name": "After verifying", "description": "" }),
    )
    .await;
    let messages =
        within(sink.wait_for(|messages| to(messages, &ann.email).iter().any(live))).await;
    let notices: Vec<_> = to(&messages, &ann.email)
        .into_iter()
        .filter(live)
        .filter_map(|mail| mail.header("Subject"))
        .collect();
    assert_eq!(notices, ["Your market \"After verifying\" is live"]);
}

/// A token for `user` that expired a minute ago, stored as the service stores its own.
async fn expired_reset_token(app: &TestApp, user: &TestUser) -> OneTimeToken {
    let token = OneTimeToken::from_random(rand::random());
    let past = Utc::now() - TimeDelta::minutes(1);
    let stored = NewAccountToken::new(&token, TokenPurpose::PasswordReset, user.id, past);
    let users = &app.components.infra.ports().users;
    users.store_token(&stored).await.unwrap();
    token
}

#[tokio::test]
async fn a_reset_sets_the_password_once_and_revokes_earlier_tokens_on_every_instance() {
    let sink = SmtpSink::start().await;
    let one = app_mailing(&sink, None).await;
    let database = one.store.url();
    let two = app_mailing(&sink, Some(&database)).await;
    let _worker = one.run_worker();
    let ann = one.user("ann", Role::User).await;
    let me = |app: &'static str, token: String| {
        let app = if app == "one" { &one } else { &two };
        async move {
            app.request(Method::GET, "/api/v1/users/me", Some(&token), None)
                .await
                .status()
        }
    };
    assert_eq!(me("two", ann.token.clone()).await, StatusCode::OK);

    let asked = post(
        &one,
        "/api/v1/auth/password-reset",
        None,
        json!({ "email": "ANN@example.com" }),
    );
    let asked = body(asked.await, 202).await;
    let subject = "Reset your Markets password";
    let token = link_token(&sink, &ann.email, subject, "reset-password").await;
    let confirm = |token: String, password: &'static str| {
        let body = json!({ "token": token, "password": password });
        post(&two, "/api/v1/auth/password-reset/confirm", None, body)
    };
    let expired = expired_reset_token(&one, &ann).await;
    let late = confirm(expired.as_str().to_owned(), "a new password");
    error(late.await, 400, "bad_request").await;
    let short = confirm(token.clone(), "short").await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let done = confirm(token.clone(), "a new password").await;
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    for instance in ["one", "two"] {
        let refused = me(instance, ann.token.clone()).await;
        assert_eq!(
            refused,
            StatusCode::UNAUTHORIZED,
            "the old token on {instance}"
        );
    }
    error(confirm(token, "another password").await, 400, "bad_request").await;
    error(
        one.login(&ann.email, "password123").await,
        401,
        "unauthorized",
    )
    .await;
    let login = body(one.login(&ann.email, "a new password").await, 200).await;
    let fresh = login["data"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me("two", fresh.clone()).await, StatusCode::OK);
    let user = one
        .request(Method::GET, "/api/v1/users/me", Some(&fresh), None)
        .await;
    assert_eq!(
        body(user, 200).await["data"]["email_verified"],
        true,
        "the link reached it"
    );

    let unknown = post(
        &one,
        "/api/v1/auth/password-reset",
        None,
        json!({ "email": "nobody@example.com" }),
    );
    assert_eq!(
        body(unknown.await, 202).await,
        asked,
        "the same answer for an unknown email"
    );
    drained(&one).await;
    assert!(to(&sink.messages(), "nobody@example.com").is_empty());
}

#[tokio::test]
async fn reset_requests_are_limited_per_email() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let ask = || {
        post(
            &app,
            "/api/v1/auth/password-reset",
            None,
            json!({ "email": ann.email }),
        )
    };
    for _ in 0..3 {
        assert_eq!(ask().await.status(), StatusCode::ACCEPTED);
    }
    let refused = ask().await;
    assert!(refused.headers().contains_key("retry-after"));
    error(refused, 429, "rate_limited").await;
    let other = post(
        &app,
        "/api/v1/auth/password-reset",
        None,
        json!({ "email": "bob@example.com" }),
    );
    assert_eq!(
        other.await.status(),
        StatusCode::ACCEPTED,
        "another email has its own budget"
    );
    let malformed = post(
        &app,
        "/api/v1/auth/password-reset",
        None,
        json!({ "email": "not an email" }),
    );
    assert_eq!(malformed.await.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
