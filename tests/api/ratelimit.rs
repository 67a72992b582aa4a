//! Rate limits: exact budgets, Retry-After, shared across instances through Redis, keyed by
//! the real client behind trusted proxies only, surviving a Redis outage, and per email on
//! login.

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

#[tokio::test]
async fn the_eleventh_wrong_password_for_one_email_is_refused_from_any_address() {
    let app =
        TestApp::spawn_configured(&[("MARKETS__RATE_LIMIT__TRUSTED_PROXIES", "127.0.0.1/32")])
            .await;
    let ann = app.user("ann", Role::User).await;
    let attempt = |n: u32| {
        let body = json!({"email": ann.email, "password": "not the password"});
        app.client
            .request(Method::POST, format!("{}/api/v1/auth/login", app.base))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&body)
            .send()
    };
    for n in 1..=9 {
        // Nine here plus the helper's successful login make ten attempts for this email.
        assert_eq!(attempt(n).await.unwrap().status(), 401, "attempt {n}");
    }
    let refused = attempt(50).await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    error(refused, 429, "rate_limited").await;
}
