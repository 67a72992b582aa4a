//! Password hashing under a registration flood: the hashing queue is bounded, so the flood is
//! refused with 503 and `Retry-After` (never a 500, never an ever longer wait), and a login
//! arriving in the middle of it is still served.

use futures_util::future::join_all;
use markets_auth::HashingSettings;
use reqwest::StatusCode;

use crate::helpers::{TestApp, body, error, header};

/// Registrations fired at once.
const FLOOD: usize = 40;

/// OWASP's cost, as in production, through one slot with two waiting places (one of them open
/// to new hashes) and a wait long enough never to end in these tests: only the queue's depth
/// refuses.
fn one_slot() -> HashingSettings {
    HashingSettings {
        max_concurrent: 1,
        max_waiting: 2,
        queue_timeout_ms: 60_000,
        ..HashingSettings::default()
    }
}

#[tokio::test]
async fn a_registration_flood_is_refused_with_retry_after_while_a_login_is_served() {
    // The per-address registration limit is lifted: the hashing queue's bound is under test.
    let app = TestApp::spawn_hashing(
        one_slot(),
        &[("MARKETS__RATE_LIMIT__REGISTER__LIMIT", "100000")],
    )
    .await;
    body(
        app.register("ann@example.com", "password123", "Ann").await,
        201,
    )
    .await;

    let app = &app;
    let flood = join_all((0..FLOOD).map(|i| {
        let email = format!("flood{i}@example.com");
        async move {
            (
                email.clone(),
                app.register(&email, "password123", "Flood").await,
            )
        }
    }));
    let (flood, login) = tokio::join!(flood, app.login("ann@example.com", "password123"));
    // Registrations can take only two of the three places: the login always has one.
    body(login, 200).await;

    let mut refused = Vec::new();
    for (email, response) in flood {
        if response.status() == StatusCode::CREATED {
            continue;
        }
        let retry_after = header(&response, "retry-after");
        let json = error(response, 503, "service_unavailable").await;
        assert_eq!(json["error"], "password hashing is currently unavailable");
        let retry_after: u64 = retry_after.and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(retry_after >= 1, "{email}: Retry-After {retry_after}");
        refused.push(email);
    }
    // At most three of the flood were in the queue at any moment, while all forty arrived at
    // once: most were refused.
    assert!(
        !refused.is_empty(),
        "no registration of {FLOOD} was refused"
    );
    assert!(refused.len() < FLOOD, "every registration was refused");

    // The refusals were load, not a fault: once the flood is over, a refused one goes through.
    body(app.register(&refused[0], "password123", "Flood").await, 201).await;
}
