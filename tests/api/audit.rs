//! Security events: logged once as structured events, and the durable ones served to admins by
//! `GET /api/v1/admin/audit` with their actor, target and request id.

use markets_domain::permission::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use crate::helpers::{TestApp, body, error};

/// Every `security` event logged by any test, as JSON lines; tests pick theirs by request id.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("security=info")
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The security events logged for `request_id`.
fn logged(request_id: &str) -> Vec<Value> {
    let log = captured();
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
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
    captured();
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
