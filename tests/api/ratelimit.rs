//! Rate limits: exact budgets, Retry-After, shared across instances through Redis, keyed by
//! the real client behind trusted proxies only, surviving a Redis outage, and failed logins per
//! account: one address cannot lock the owner out, many are bounded together.

use markets_domain::permission::Role;
use markets_redis::RedisSettings;
use markets_redis::testing::{PrivateRedis, shared_settings};
use reqwest::{Method, Response};
use serde_json::json;
use std::time::Duration;

use crate::helpers::{TestApp, error};

fn limits<'a>(limit: &'a str, period_ms: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("MARKETS__RATE_LIMIT__SEARCH__LIMIT", limit),
        ("MARKETS__RATE_LIMIT__SEARCH__PERIOD_MS", period_ms),
    ]
}

async fn search_from(app: &TestApp, forwarded_for: Option<&str>) -> Response {
    let mut request = app
        .client
        .get(format!("{}/api/v1/markets/search?query=rain", app.base));
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

fn header(response: &Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn exactly_the_budget_passes_then_429_until_it_refills() {
    let app = TestApp::spawn_configured(&limits("5", "1000")).await;
    for remaining in (0..5).rev() {
        let response = search_from(&app, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), "5");
        assert_eq!(
            header(&response, "ratelimit-remaining"),
            remaining.to_string()
        );
    }
    let refused = search_from(&app, None).await;
    assert_eq!(header(&refused, "retry-after"), "1", "200 ms, rounded up");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    error(refused, 429, "rate_limited").await;
    // One request's allowance comes back after 1000 ms / 5.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(search_from(&app, None).await.status(), 200);
}

#[tokio::test]
async fn two_instances_share_one_budget() {
    let redis = shared_settings();
    let one = TestApp::spawn_with(redis.clone(), &limits("4", "60000")).await;
    let two = TestApp::spawn_with(redis, &limits("4", "60000")).await;
    for app in [&one, &two, &one, &two] {
        assert_eq!(search_from(app, None).await.status(), 200);
    }
    error(search_from(&two, None).await, 429, "rate_limited").await;
    error(search_from(&one, None).await, 429, "rate_limited").await;
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let untrusted = TestApp::spawn_configured(&limits("2", "60000")).await;
    for ip in ["1.1.1.1", "2.2.2.2"] {
        assert_eq!(search_from(&untrusted, Some(ip)).await.status(), 200);
    }
    let spoofed = search_from(&untrusted, Some("3.3.3.3")).await;
    error(spoofed, 429, "rate_limited").await;

    let mut trusting = limits("2", "60000");
    trusting.push(("MARKETS__RATE_LIMIT__TRUSTED_PROXIES", "127.0.0.1/32"));
    let behind_proxy = TestApp::spawn_configured(&trusting).await;
    for ip in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        let response = search_from(&behind_proxy, Some(ip)).await;
        assert_eq!(response.status(), 200, "{ip} is a client of its own");
    }
}

#[tokio::test]
async fn without_redis_each_instance_still_limits_and_nothing_fails() {
    let mut redis = PrivateRedis::start();
    let settings: RedisSettings = redis.settings();
    let app = TestApp::spawn_with(settings, &limits("2", "60000")).await;
    redis.stop();
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..4).map(|_| search_from(&app, None)))
            .await
            .iter()
            .map(|response| response.status().as_u16())
            .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 200, 429, 429], "{statuses:?}");
}

/// A login for `email` from the client `ip` (behind the trusted loopback proxy).
async fn login_from(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    let body = json!({"email": email, "password": password});
    app.client
        .request(Method::POST, format!("{}/api/v1/auth/login", app.base))
        .header("x-forwarded-for", ip)
        .json(&body)
        .send()
        .await
        .unwrap()
}

const BEHIND_PROXY: (&str, &str) = ("MARKETS__RATE_LIMIT__TRUSTED_PROXIES", "127.0.0.1/32");

#[tokio::test]
async fn an_address_guessing_wrong_cannot_keep_the_owner_out() {
    // The shipped budgets: only the proxy is configured.
    let app = TestApp::spawn_configured(&[BEHIND_PROXY]).await;
    let ann = app.user("ann", Role::User).await;
    // Issue 15's attack, faster: one address sends more wrong passwords than the old per-email
    // budget of 10 a minute, which used to refuse the owner too.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let guess = login_from(&app, "198.51.100.7", &ann.email, "not the password").await;
        statuses.push(guess.status().as_u16());
    }
    // The owner, from another address, with the right password.
    let owner = login_from(&app, "203.0.113.5", &ann.email, "password123").await;
    assert_eq!(owner.status(), 200, "the owner was locked out");
    // The attacker's wrong guesses stop at its own budget, the refused ones checked no password.
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    let again = login_from(&app, "198.51.100.7", &ann.email, "password123").await;
    assert!(again.headers().contains_key("retry-after"));
    error(again, 429, "rate_limited").await;
    let owner = login_from(&app, "203.0.113.5", &ann.email, "password123").await;
    assert_eq!(owner.status(), 200, "the owner was locked out");
}

#[tokio::test]
async fn guesses_from_many_addresses_are_bounded_by_the_account_budget() {
    let app = TestApp::spawn_configured(&[
        BEHIND_PROXY,
        (
            "MARKETS__RATE_LIMIT__LOGIN_FAILURES__PER_ACCOUNT__LIMIT",
            "4",
        ),
        (
            "MARKETS__RATE_LIMIT__LOGIN_FAILURES__PER_CLIENT__LIMIT",
            "2",
        ),
        // Refilling no faster than the account's (one in 15 minutes), as start-up demands.
        (
            "MARKETS__RATE_LIMIT__LOGIN_FAILURES__PER_CLIENT__PERIOD_MS",
            "1800000",
        ),
    ])
    .await;
    let ann = app.user("ann", Role::User).await;
    let bob = app.user("bob", Role::User).await;
    let mut statuses = Vec::new();
    for n in 1..=8 {
        let guess = login_from(&app, &format!("198.51.100.{n}"), &ann.email, "guess").await;
        statuses.push(guess.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429, 429, 429]);
    // Once the account's budget is spent, the owner waits too (the README's trade-off) ...
    let owner = login_from(&app, "203.0.113.5", &ann.email, "password123").await;
    assert!(owner.headers().contains_key("retry-after"));
    error(owner, 429, "rate_limited").await;
    // ... and only that account does.
    let other = login_from(&app, "203.0.113.5", &bob.email, "password123").await;
    assert_eq!(other.status(), 200);
}
