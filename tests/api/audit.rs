//! Security events: logged once as structured events, and the durable ones served to admins by
//! `GET /api/v1/admin/audit` with their actor, target and request id.

use markets_domain::permission::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, body, capture_logs, error, invalid, log_lines};

/// The security events logged for `request_id`.
fn logged(request_id: &str) -> Vec<Value> {
    log_lines()
        .into_iter()
        .filter(|event| event["request_id"] == request_id)
        .collect()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    request_id: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("x-request-id", request_id);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The trail's newest events, as the admin sees them.
async fn trail(app: &TestApp, token: &str) -> Vec<Value> {
    let page = body(
        app.request(
            Method::GET,
            "/api/v1/admin/audit?limit=100",
            Some(token),
            None,
        )
        .await,
        200,
    )
    .await;
    page["data"].as_array().unwrap().clone()
}

fn find<'a>(events: &'a [Value], request_id: &str) -> &'a Value {
    events
        .iter()
        .find(|event| event["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no event for {request_id} in {events:#?}"))
}

#[tokio::test]
async fn security_events_are_logged_once_and_kept_in_the_trail() {
    capture_logs();
    let app = TestApp::spawn().await;
    let admin = app.user("boss", Role::Admin).await;
    let user = app.user("ann", Role::User).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let rid = |name: &str| format!("{name}-{run}");

    let failed = json!({"email": "ghost.person@example.com", "password": "wrong-password"});
    send(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(failed),
        &rid("login"),
    )
    .await;
    let wrong = json!({"email": user.email, "password": "wrong-password"});
    let refused = send(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(wrong),
        &rid("wrong"),
    )
    .await;
    error(refused, 401, "unauthorized").await;
    let denied = send(
        &app,
        Method::GET,
        "/api/v1/admin/audit",
        Some(&user.token),
        None,
        &rid("denied"),
    )
    .await;
    error(denied, 403, "permission_denied").await;
    let role = json!({"role": "moderator"});
    let path = format!("/api/v1/users/{}/role", user.id);
    send(
        &app,
        Method::PUT,
        &path,
        Some(&admin.token),
        Some(role),
        &rid("role"),
    )
    .await;
    let market = app
        .market(
            &admin,
            json!({"name": "Doomed", "description": "", "status": "open", "volume": "0"}),
        )
        .await;
    let id = market["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/markets/{id}");
    let deleted = send(
        &app,
        Method::DELETE,
        &path,
        Some(&admin.token),
        None,
        &rid("delete"),
    )
    .await;
    assert_eq!(deleted.status(), 204);
    send(
        &app,
        Method::GET,
        "/api/v1/users/me",
        Some("not.a.token"),
        None,
        &rid("token"),
    )
    .await;

    let events = trail(&app, &admin.token).await;
    for (name, action, actor, target) in [
        ("login", "auth.login_failed", Value::Null, Value::Null),
        ("wrong", "auth.login_failed", Value::Null, json!(user.id)),
        (
            "denied",
            "authz.denied",
            json!(user.id),
            json!("GET /api/v1/admin/audit"),
        ),
        ("role", "user.role_changed", json!(admin.id), json!(user.id)),
        ("delete", "market.deleted", json!(admin.id), json!(id)),
    ] {
        let stored = find(&events, &rid(name));
        assert_eq!(stored["action"], action, "{stored}");
        assert_eq!(stored["actor_id"], actor, "{stored}");
        assert_eq!(stored["target_id"], target, "{stored}");
        let lines = logged(&rid(name));
        assert_eq!(lines.len(), 1, "logged once: {lines:?}");
        assert_eq!(lines[0]["event"], action);
    }
    let failure = find(&events, &rid("login"));
    assert_eq!(failure["details"]["email"], "g…@example.com");
    assert!(!failure.to_string().contains("wrong-password"));
    let wrong = find(&events, &rid("wrong"));
    assert_eq!(wrong["target_type"], "user", "{wrong}");
    assert!(!wrong.to_string().contains("wrong-password"));
    let change = find(&events, &rid("role"));
    assert_eq!(change["details"]["role"], "moderator", "{change}");
    assert_eq!(change["details"]["previous_role"], "user", "{change}");
    let logged_change = logged(&rid("role"));
    assert!(
        logged_change[0]["details"]
            .as_str()
            .is_some_and(|details| details.contains("previous_role")),
        "{logged_change:?}"
    );
    let rejected = logged(&rid("token"));
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["event"], "auth.token_rejected");
    assert_eq!(rejected[0]["reason"], "malformed");
}

#[tokio::test]
async fn the_trail_is_for_admins_only() {
    let app = TestApp::spawn().await;
    let moderator = app.user("mod", Role::Moderator).await;
    error(app.get("/api/v1/admin/audit").await, 401, "unauthorized").await;
    let refused = app
        .request(
            Method::GET,
            "/api/v1/admin/audit",
            Some(&moderator.token),
            None,
        )
        .await;
    error(refused, 403, "permission_denied").await;
}

/// Asserts that `request_id` raised `action` once in the log and once in the trail, with this
/// actor and target; returns the stored event.
fn assert_recorded(
    events: &[Value],
    request_id: &str,
    action: &str,
    actor: &Value,
    target: &Value,
) -> Value {
    let stored: Vec<&Value> = events
        .iter()
        .filter(|event| event["request_id"] == request_id)
        .collect();
    assert_eq!(stored.len(), 1, "stored once: {stored:#?}");
    let stored = stored[0];
    assert_eq!(stored["action"], action, "{stored}");
    assert_eq!(&stored["actor_id"], actor, "{stored}");
    assert_eq!(&stored["target_id"], target, "{stored}");
    let lines = logged(request_id);
    assert_eq!(lines.len(), 1, "logged once: {lines:?}");
    assert_eq!(lines[0]["event"], action);
    stored.clone()
}

#[tokio::test]
async fn registrations_and_logouts_are_recorded() {
    capture_logs();
    let app = TestApp::spawn().await;
    let admin = app.user("boss", Role::Admin).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (registered, logout) = (format!("register-{run}"), format!("logout-{run}"));

    let new =
        json!({"email": "cleo@example.com", "password": "password123", "display_name": "Cleo"});
    let response = send(
        &app,
        Method::POST,
        "/api/v1/auth/register",
        None,
        Some(new),
        &registered,
    )
    .await;
    let cleo = body(response, 201).await["data"]["id"].clone();
    let gone = send(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        Some(&admin.token),
        None,
        &logout,
    )
    .await;
    assert_eq!(gone.status(), 204);

    // The admin's token is revoked now: another admin reads the trail.
    let reader = app.user("reader", Role::Admin).await;
    let events = trail(&app, &reader.token).await;
    let stored = assert_recorded(&events, &registered, "auth.registered", &cleo, &cleo);
    assert_eq!(stored["target_type"], "user");
    assert!(!stored.to_string().contains("password123"), "{stored}");
    let stored = assert_recorded(
        &events,
        &logout,
        "auth.logout",
        &json!(admin.id),
        &Value::Null,
    );
    assert!(!stored.to_string().contains(&admin.token), "no token kept");
}

#[tokio::test]
async fn rate_limited_logins_are_recorded() {
    capture_logs();
    // One login per client a minute: the admin's own login spends it.
    let app = TestApp::spawn_configured(&[
        ("MARKETS__RATE_LIMIT__LOGIN__LIMIT", "1"),
        ("MARKETS__RATE_LIMIT__LOGIN__PERIOD_MS", "60000"),
    ])
    .await;
    let admin = app.user("boss", Role::Admin).await;
    let request_id = format!("limited-{}", uuid::Uuid::new_v4().simple());
    let attempt = json!({"email": admin.email, "password": "password123"});
    let refused = send(
        &app,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(attempt),
        &request_id,
    )
    .await;
    error(refused, 429, "rate_limited").await;

    let events = trail(&app, &admin.token).await;
    let route = json!("POST /api/v1/auth/login");
    let stored = assert_recorded(
        &events,
        &request_id,
        "auth.login_rate_limited",
        &Value::Null,
        &route,
    );
    assert_eq!(stored["target_type"], "route");
}

/// GET the trail page at `query`; its events' ids and its `next_cursor`.
async fn trail_page(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, Value) {
    let path = format!("/api/v1/admin/audit?{query}");
    let page = body(
        app.request(Method::GET, &path, Some(token), None).await,
        200,
    )
    .await;
    let ids = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].clone())
        .collect();
    (ids, page["meta"]["next_cursor"].clone())
}

#[tokio::test]
async fn the_trail_walks_in_two_pages_and_ends_with_no_cursor() {
    let app = TestApp::spawn().await;
    let admin = app.user("boss", Role::Admin).await;
    for name in ["ann", "bob", "cleo"] {
        app.user(name, Role::User).await;
    }
    // Four registrations, nothing else: two full pages of two, and the second is the last.
    let (all, none) = trail_page(&app, &admin.token, "limit=100").await;
    assert_eq!((all.len(), none), (4, Value::Null));
    let (first, cursor) = trail_page(&app, &admin.token, "limit=2").await;
    let cursor = cursor.as_str().expect("a full first page has a cursor");
    let (second, end) = trail_page(&app, &admin.token, &format!("limit=2&cursor={cursor}")).await;
    assert_eq!(end, Value::Null, "a full last page says no more");
    assert_eq!(
        [first, second].concat(),
        all,
        "every event once, newest first"
    );
    let refused = app
        .request(
            Method::GET,
            "/api/v1/admin/audit?cursor=not-a-cursor&limit=0",
            Some(&admin.token),
            None,
        )
        .await;
    invalid(refused, &["cursor", "limit"]).await;
}

/// Every event in the trail, walking its pages to the end.
async fn whole_trail(app: &TestApp, token: &str) -> Vec<Value> {
    let (mut events, mut query) = (Vec::new(), "limit=100".to_owned());
    loop {
        let path = format!("/api/v1/admin/audit?{query}");
        let page = body(
            app.request(Method::GET, &path, Some(token), None).await,
            200,
        )
        .await;
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["meta"]["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=100&cursor={cursor}"),
            None => return events,
        }
    }
}

/// Sends `n` requests built by `send`, 50 at a time; their statuses.
async fn flood<F, Fut>(n: usize, send: F) -> Vec<u16>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut statuses = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let responses = futures_util::future::join_all(chunk.iter().map(|_| send())).await;
        statuses.extend(responses.iter().map(|response| response.status().as_u16()));
    }
    statuses
}

/// The trail's rows of `action`, and the refusals they stand for (the sum of `details.count`).
fn tallied(events: &[Value], action: &str) -> (usize, u64) {
    let rows: Vec<&Value> = events.iter().filter(|e| e["action"] == action).collect();
    let count = |event: &&Value| {
        let count = event["details"]["count"].as_str();
        count
            .unwrap_or_else(|| panic!("no count: {event}"))
            .parse::<u64>()
            .unwrap()
    };
    (rows.len(), rows.iter().map(count).sum())
}

/// A client flooding a limited and a forbidden route adds one row per action and minute, whose
/// counts add up to the refusals (v1.1 "Accounts"): not one row per refused request.
#[tokio::test]
async fn a_flood_of_refusals_adds_a_bounded_number_of_counted_rows() {
    // Two logins per client a minute: the admin's and the user's own spend them. The deletes
    // must reach the permission check, so the per-user write limit is out of their way.
    let app = TestApp::spawn_configured(&[
        ("MARKETS__RATE_LIMIT__LOGIN__LIMIT", "2"),
        ("MARKETS__RATE_LIMIT__LOGIN__PERIOD_MS", "60000"),
        ("MARKETS__RATE_LIMIT__WRITES__LIMIT", "100000"),
    ])
    .await;
    let admin = app.user("boss", Role::Admin).await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(
            &admin,
            json!({"name": "Kept", "description": "", "status": "open", "volume": "0"}),
        )
        .await;
    let path = format!("/api/v1/markets/{}", market["id"].as_str().unwrap());

    let logins = flood(1000, || app.login(&ann.email, "wrong-password")).await;
    let deletes = flood(1000, || {
        app.request(Method::DELETE, &path, Some(&ann.token), None)
    })
    .await;
    assert!(logins.iter().all(|status| *status == 429), "{logins:?}");
    assert!(deletes.iter().all(|status| *status == 403), "{deletes:?}");

    // Each key's first refusal is in the trail at once; the rest wait for a flush.
    let prompt = whole_trail(&app, &admin.token).await;
    for action in ["auth.login_rate_limited", "authz.denied"] {
        let (rows, count) = tallied(&prompt, action);
        assert!(
            rows >= 1 && count == rows as u64,
            "{action}: {rows} rows, {count}"
        );
    }
    app.components.state.events().flush().await;
    let events = whole_trail(&app, &admin.token).await;
    let throttled = tallied(&events, "auth.login_rate_limited");
    let denied = tallied(&events, "authz.denied");
    eprintln!("(rows, refusals counted): throttled {throttled:?}, denied {denied:?}");
    // One row per client, action and minute; a flood that straddles a minute takes two.
    assert!(
        throttled.0 <= 2,
        "{throttled:?} rows for 1,000 refused logins"
    );
    assert!(denied.0 <= 2, "{denied:?} rows for 1,000 forbidden deletes");
    assert_eq!(
        (throttled.1, denied.1),
        (1000, 1000),
        "every refusal counted"
    );
}
