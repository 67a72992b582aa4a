//! The envelope, error mapping at the edges (routes, methods, bodies), request ids, the OpenAPI
//! document and the health probes.

use markets_domain::permission::Role;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::collections::BTreeSet;

use crate::helpers::{TestApp, body, detail_fields, error, header, invalid, keys};

#[tokio::test]
async fn unknown_routes_are_404_in_the_envelope() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::GET, "/api/v1/nope"),
        (Method::POST, "/api/v2/markets"),
        (Method::GET, "/api/v1/markets/search/extra"),
        (Method::DELETE, "/api/v1/users"),
    ] {
        let response = app.request(method.clone(), path, None, None).await;
        assert!(
            header(&response, "content-type").is_some_and(|t| t.starts_with("application/json")),
            "{method} {path}"
        );
        let json = error(response, 404, "not_found").await;
        assert_eq!(keys(&json), ["code", "error", "success"], "{json}");
    }
}

fn allowed(response: &Response) -> BTreeSet<String> {
    header(response, "allow")
        .unwrap_or_else(|| panic!("no Allow header on {}", response.url()))
        .split(',')
        .map(|method| method.trim().to_uppercase())
        .filter(|method| !method.is_empty())
        .collect()
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = TestApp::spawn().await;
    let market = format!("/api/v1/markets/{}", uuid::Uuid::new_v4());
    let role = format!("/api/v1/users/{}/role", uuid::Uuid::new_v4());
    let cases: [(Method, &str, &[&str]); 10] = [
        (Method::DELETE, "/api/v1/markets", &["GET", "POST"]),
        (Method::PUT, "/api/v1/markets", &["GET", "POST"]),
        (Method::GET, "/api/v1/auth/login", &["POST"]),
        (Method::GET, "/api/v1/auth/register", &["POST"]),
        (Method::POST, "/api/v1/users/me", &["GET"]),
        (Method::GET, &role, &["PUT"]),
        (Method::PUT, &market, &["GET", "PATCH", "DELETE"]),
        (Method::POST, "/api/v1/markets/search", &["GET"]),
        (Method::POST, "/health/live", &["GET"]),
        (Method::DELETE, "/openapi.json", &["GET"]),
    ];
    for (method, path, allow) in cases {
        let response = app.request(method.clone(), path, None, None).await;
        let expected: BTreeSet<String> = allow.iter().map(|m| (*m).to_owned()).collect();
        assert_eq!(allowed(&response), expected, "{method} {path}");
        assert!(header(&response, "x-request-id").is_some());
        error(response, 405, "method_not_allowed").await;
    }
}

/// `POST path` with a raw body sent as JSON.
pub(crate) async fn post_raw(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    raw: &str,
) -> Response {
    let mut request = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(raw.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_422_with_details() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let token = Some(ann.token.as_str());

    for raw in ["{not json", "", "[]", "null"] {
        let json = error(
            post_raw(&app, "/api/v1/markets", token, raw).await,
            422,
            "validation_failed",
        )
        .await;
        assert!(!detail_fields(&json).is_empty(), "{raw:?}: {json}");
    }
    invalid(
        post_raw(
            &app,
            "/api/v1/markets",
            token,
            r#"{"name": 123, "description": ""}"#,
        )
        .await,
        &["name"],
    )
    .await;
    invalid(
        post_raw(
            &app,
            "/api/v1/markets",
            token,
            r#"{"name": "ok", "description": ["a"]}"#,
        )
        .await,
        &["description"],
    )
    .await;
    invalid(
        post_raw(
            &app,
            "/api/v1/markets",
            token,
            r#"{"name": "ok", "description": "", "volume": true}"#,
        )
        .await,
        &["volume"],
    )
    .await;
    invalid(
        post_raw(
            &app,
            "/api/v1/auth/register",
            None,
            r#"{"email": 1, "password": "password123", "display_name": "Ann"}"#,
        )
        .await,
        &["email"],
    )
    .await;
    invalid(
        post_raw(&app, "/api/v1/auth/login", None, r#"{"email": "a@b.co"}"#).await,
        &["password"],
    )
    .await;
    let patch = app
        .client
        .patch(format!(
            "{}/api/v1/markets/{}",
            app.base,
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(&ann.token)
        .header("content-type", "application/json")
        .body(r#"{"name": 123}"#)
        .send()
        .await
        .unwrap();
    invalid(patch, &["name"]).await;
    let list = body(app.get("/api/v1/markets").await, 200).await;
    assert_eq!(list["meta"]["total"], 0);
}

#[tokio::test]
async fn json_with_trailing_garbage_is_malformed() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    for raw in [
        r#"{"name": "x", "description": ""} trailing"#,
        r#"{"name": "x", "description": ""}{"name": "y"}"#,
        r#"{"name": "x", "description": ""}]"#,
    ] {
        let json = error(
            post_raw(&app, "/api/v1/markets", Some(&ann.token), raw).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(detail_fields(&json), ["body"], "{raw:?}: {json}");
    }
    let list = body(app.get("/api/v1/markets").await, 200).await;
    assert_eq!(
        list["meta"]["total"], 0,
        "nothing created from a malformed body"
    );
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let huge = json!({"name": "Huge", "description": "d".repeat(70_000)});
    let response = app
        .request(
            Method::POST,
            "/api/v1/markets",
            Some(&ann.token),
            Some(huge),
        )
        .await;
    assert!(header(&response, "x-request-id").is_some());
    error(response, 413, "payload_too_large").await;

    let huge =
        json!({"email": "ann2@example.com", "password": "p".repeat(70_000), "display_name": "A"});
    let response = app
        .request(Method::POST, "/api/v1/auth/register", None, Some(huge))
        .await;
    error(response, 413, "payload_too_large").await;

    // Under the limit, the same field is judged by its own rule instead.
    let large = json!({"name": "Large", "description": "d".repeat(60_000)});
    invalid(
        app.request(
            Method::POST,
            "/api/v1/markets",
            Some(&ann.token),
            Some(large),
        )
        .await,
        &["description"],
    )
    .await;
    let list = body(app.get("/api/v1/markets").await, 200).await;
    assert_eq!(list["meta"]["total"], 0);
}

async fn with_request_id(app: &TestApp, method: Method, path: &str, id: Option<&str>) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    request.send().await.unwrap()
}

fn request_id(response: &Response) -> String {
    header(response, "x-request-id").unwrap_or_else(|| {
        panic!(
            "no X-Request-Id on {} {}",
            response.status(),
            response.url()
        )
    })
}

fn assert_fresh_uuid(id: &str, sent: Option<&str>) {
    uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("not a UUID: {id:?}"));
    assert_ne!(Some(id), sent);
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_minted_otherwise() {
    let app = TestApp::spawn().await;
    let sane_uuid = uuid::Uuid::new_v4().to_string();
    let long = "x".repeat(200);
    let targets = [
        (Method::GET, "/health/live", 200),
        (Method::GET, "/api/v1/markets", 200),
        (Method::GET, "/nope", 404),
        (Method::DELETE, "/api/v1/markets", 405),
        (Method::GET, "/api/v1/users/me", 401),
        (Method::GET, "/api/v1/markets?page=0", 422),
        (Method::GET, "/api/v1/markets/not-a-uuid", 422),
    ];
    for (method, path, status) in targets {
        for sane in ["abc-123", sane_uuid.as_str(), "trace:1.2_3"] {
            let response = with_request_id(&app, method.clone(), path, Some(sane)).await;
            assert_eq!(response.status(), status, "{method} {path}");
            assert_eq!(request_id(&response), sane, "{method} {path}");
        }
        for insane in [long.as_str(), "has spaces in it", "semi;colon"] {
            let response = with_request_id(&app, method.clone(), path, Some(insane)).await;
            assert_eq!(response.status(), status, "{method} {path}");
            assert_fresh_uuid(&request_id(&response), Some(insane));
        }
        let first = request_id(&with_request_id(&app, method.clone(), path, None).await);
        let second = request_id(&with_request_id(&app, method.clone(), path, None).await);
        assert_fresh_uuid(&first, None);
        assert_fresh_uuid(&second, None);
        assert_ne!(first, second, "a new id per request");
    }

    // On a 413, too.
    let ann = app.user("ann", Role::User).await;
    let response = app
        .client
        .post(format!("{}/api/v1/markets", app.base))
        .bearer_auth(&ann.token)
        .header("x-request-id", "big-body-1")
        .json(&json!({"name": "x", "description": "d".repeat(70_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(request_id(&response), "big-body-1");
}

/// A labelled request: method, path, token and body.
type Case<'a> = (&'a str, Method, String, Option<&'a str>, Option<Value>);

fn assert_success(label: &str, json: &Value) {
    assert_eq!(json["success"], true, "{label}: {json}");
    assert!(json.get("data").is_some(), "{label}: {json}");
    assert!(json.get("error").is_none(), "{label}: {json}");
}

#[tokio::test]
async fn every_success_body_uses_the_envelope() {
    let app = TestApp::spawn().await;
    let registered = body(
        app.register("ann@example.com", "password123", "Ann").await,
        201,
    )
    .await;
    assert_success("register", &registered);
    let login = body(app.login("ann@example.com", "password123").await, 200).await;
    assert_success("login", &login);
    let token = login["data"]["access_token"].as_str().unwrap().to_owned();
    let admin = app.user("root", Role::Admin).await;

    let created = body(
        app.request(
            Method::POST,
            "/api/v1/markets",
            Some(&token),
            Some(json!({"name": "Rain?", "description": "rain"})),
        )
        .await,
        201,
    )
    .await;
    assert_success("create", &created);
    let path = format!(
        "/api/v1/markets/{}",
        created["data"]["id"].as_str().unwrap()
    );
    let role_path = format!(
        "/api/v1/users/{}/role",
        registered["data"]["id"].as_str().unwrap()
    );

    let cases: Vec<Case> = vec![
        (
            "me",
            Method::GET,
            "/api/v1/users/me".into(),
            Some(token.as_str()),
            None,
        ),
        ("list", Method::GET, "/api/v1/markets".into(), None, None),
        (
            "cursor list",
            Method::GET,
            "/api/v1/markets?limit=5".into(),
            None,
            None,
        ),
        ("get", Method::GET, path.clone(), None, None),
        (
            "search",
            Method::GET,
            "/api/v1/markets/search?query=rain".into(),
            None,
            None,
        ),
        (
            "patch",
            Method::PATCH,
            path.clone(),
            Some(token.as_str()),
            Some(json!({"volume": 1})),
        ),
        (
            "role",
            Method::PUT,
            role_path,
            Some(admin.token.as_str()),
            Some(json!({"role": "moderator"})),
        ),
    ];
    for (label, method, path, token, request) in cases {
        let response = app.request(method, &path, token, request).await;
        assert!(
            header(&response, "content-type").is_some_and(|t| t.starts_with("application/json")),
            "{label}"
        );
        assert_success(label, &body(response, 200).await);
    }
}

/// Every path the service serves, with its methods: the contract's routes, the probes, the
/// metrics, this document and the interactive documentation.
const SERVED: [(&str, &[&str]); 18] = [
    ("/api/v1/auth/register", &["POST"]),
    ("/api/v1/auth/login", &["POST"]),
    ("/api/v1/auth/logout", &["POST"]),
    ("/api/v1/auth/verify-email", &["POST"]),
    ("/api/v1/auth/password-reset", &["POST"]),
    ("/api/v1/auth/password-reset/confirm", &["POST"]),
    ("/api/v1/users/me", &["GET"]),
    ("/api/v1/users/{id}/role", &["PUT"]),
    ("/api/v1/admin/audit", &["GET"]),
    ("/api/v1/markets", &["GET", "POST"]),
    ("/api/v1/markets/search", &["GET"]),
    ("/api/v1/markets/{id}", &["DELETE", "GET", "PATCH"]),
    ("/health/live", &["GET"]),
    ("/health/ready", &["GET"]),
    ("/metrics", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/docs", &["GET"]),
    ("/docs/{file}", &["GET"]),
];

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

/// `path` with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", &uuid::Uuid::new_v4().to_string())
        .replace("{file}", "index.html")
}

#[tokio::test]
async fn the_openapi_document_describes_every_served_path() {
    let app = TestApp::spawn().await;
    let document = body(app.get("/openapi.json").await, 200).await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| method.to_uppercase())
                .filter(|method| METHODS.contains(&method.as_str()))
                .map(move |method| (path.clone(), method))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = SERVED
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .iter()
                .map(|m| ((*path).to_owned(), (*m).to_owned()))
        })
        .collect();
    assert_eq!(documented, expected);
    for (path, methods) in SERVED {
        let url = concrete(path);
        for method in METHODS {
            let response = app
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &url,
                    None,
                    None,
                )
                .await;
            let status = response.status().as_u16();
            if methods.contains(&method) {
                assert_ne!(status, 405, "{method} {path} is served");
                if status == 404 {
                    let json = body(response, 404).await;
                    let message = json["error"].as_str().unwrap_or_default();
                    assert!(!message.starts_with("No route"), "{method} {path}: {json}");
                }
            } else {
                let allow: BTreeSet<String> = methods.iter().map(|m| (*m).to_owned()).collect();
                assert_eq!(allowed(&response), allow, "{method} {path}");
                error(response, 405, "method_not_allowed").await;
            }
        }
    }
    // Every operation documents its error statuses with the envelope, and 400 and 500 at least.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("400") && responses.contains_key("500"),
                "{method} {path}"
            );
            for (status, response) in responses {
                // The readiness probe's 503 is its own report, not an error.
                let report = path == "/health/ready" && status == "503";
                if (status.starts_with('4') || status.starts_with('5')) && !report {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    for (path, method, status) in [
        ("/api/v1/auth/register", "post", "201"),
        ("/api/v1/auth/register", "post", "409"),
        ("/api/v1/auth/login", "post", "401"),
        ("/api/v1/markets", "post", "201"),
        ("/api/v1/markets", "post", "422"),
        ("/api/v1/markets/{id}", "get", "404"),
        ("/api/v1/markets/{id}", "patch", "400"),
        ("/api/v1/markets/{id}", "patch", "403"),
        ("/api/v1/markets/{id}", "delete", "204"),
        ("/api/v1/markets/{id}", "delete", "422"),
    ] {
        assert!(
            paths[path][method]["responses"][status].is_object(),
            "{method} {path} documents {status}"
        );
    }
}

#[tokio::test]
async fn health_probes_report_ok() {
    let app = TestApp::spawn().await;
    let live = body(app.get("/health/live").await, 200).await;
    assert_eq!(live, json!({"status": "ok"}));
    let ready = body(app.get("/health/ready").await, 200).await;
    assert_eq!(ready["status"], "ok", "{ready}");
    assert_eq!(ready["checks"]["database"], "up", "{ready}");
    for (dependency, state) in ready["checks"].as_object().unwrap() {
        assert!(state == "up" || state == "down", "{dependency}: {state}");
    }
}

#[tokio::test]
async fn responses_are_hardened() {
    let app = crate::helpers::TestApp::spawn().await;
    for path in [
        "/health/live",
        "/api/v1/markets",
        "/nowhere",
        "/api/v1/markets/not-a-uuid",
    ] {
        let response = app.get(path).await;
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert!(
            !response.headers().contains_key("server"),
            "{path}: server banner"
        );
    }
    let login = app.login("nobody@example.com", "password123").await;
    assert_eq!(login.status(), 401);
    assert_eq!(login.headers()["cache-control"], "no-store");
    let me = app.get("/api/v1/users/me").await;
    assert_eq!(me.headers()["cache-control"], "no-store");
    let markets = app.get("/api/v1/markets").await;
    assert!(
        !markets.headers().contains_key("cache-control"),
        "public reads stay cacheable"
    );
}
