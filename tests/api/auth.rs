//! Registration, login and bearer tokens, including forged ones.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use markets_domain::permission::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp, USER_KEYS, body, error, header, invalid, keys};

#[tokio::test]
async fn register_returns_the_user_with_a_normalised_email_and_no_secrets() {
    let app = TestApp::spawn().await;
    let response = app
        .register("  Ann@Example.COM ", "password123", "Ann")
        .await;
    let text = {
        assert_eq!(response.status(), 201);
        response.text().await.unwrap()
    };
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["success"], true);
    let user = &json["data"];
    assert_eq!(keys(user), USER_KEYS);
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["display_name"], "Ann");
    assert_eq!(user["role"], "user");
    uuid::Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(user["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(created.offset().local_minus_utc(), 0, "UTC: {user}");
    let lower = text.to_lowercase();
    assert!(!lower.contains("password"), "{text}");
    assert!(!lower.contains("hash"), "{text}");
    assert!(!lower.contains("argon2"), "{text}");

    // The normalised address is the one that logs in.
    body(app.login("ann@example.com", "password123").await, 200).await;
}

#[tokio::test]
async fn a_duplicate_email_in_another_case_is_a_conflict() {
    let app = TestApp::spawn().await;
    body(
        app.register("ann@example.com", "password123", "Ann").await,
        201,
    )
    .await;
    let duplicate = app
        .register(" ANN@example.Com", "other-password", "Other")
        .await;
    error(duplicate, 409, "conflict").await;
    // The first registration is untouched.
    body(app.login("ann@example.com", "password123").await, 200).await;
    error(
        app.login("ann@example.com", "other-password").await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn invalid_registrations_list_every_failing_field() {
    let app = TestApp::spawn().await;
    let cases = [
        ("not-an-email", "x".repeat(7), "   ".to_owned()),
        ("ann@example", "x".repeat(129), "x".repeat(81)),
        ("ann @example.com", "".to_owned(), "".to_owned()),
    ];
    for (email, password, display_name) in cases {
        invalid(
            app.register(email, &password, &display_name).await,
            &["email", "password", "display_name"],
        )
        .await;
    }
    invalid(
        app.register("ann@example.com", &"x".repeat(7), "Ann").await,
        &["password"],
    )
    .await;
    invalid(
        app.register("ann@example.com", "password123", &"x".repeat(81))
            .await,
        &["display_name"],
    )
    .await;
    invalid(
        app.register("@example.com", "password123", "Ann").await,
        &["email"],
    )
    .await;

    // None of those registered anything; the bounds themselves are accepted.
    body(
        app.register("ann@example.com", &"p".repeat(8), &"x".repeat(80))
            .await,
        201,
    )
    .await;
    body(
        app.register("bob@example.com", &"p".repeat(128), "  Bob  ")
            .await,
        201,
    )
    .await;
    body(app.login("bob@example.com", &"p".repeat(128)).await, 200).await;
}

/// The claims of a JWT, decoded without verification.
fn claims_of(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

#[tokio::test]
async fn login_returns_a_30_minute_hs256_bearer_token_in_the_envelope() {
    let app = TestApp::spawn().await;
    let registered = body(
        app.register("ann@example.com", "password123", "Ann").await,
        201,
    )
    .await;
    let json = body(app.login("  ANN@example.com", "password123").await, 200).await;
    assert_eq!(keys(&json), ["data", "success"]);
    assert_eq!(json["success"], true);
    let data = &json["data"];
    assert_eq!(keys(data), ["access_token", "expires_in", "token_type"]);
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 1800);

    let token = data["access_token"].as_str().unwrap();
    let (head, claims) = claims_of(token);
    assert_eq!(head["alg"], "HS256");
    assert_eq!(keys(&claims), ["exp", "gen", "iat", "jti", "role", "sub"]);
    assert_eq!(claims["gen"], 0, "a new user's token epoch");
    assert_eq!(claims["sub"], registered["data"]["id"]);
    assert_eq!(claims["role"], "user");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 1800);
    assert!((iat - Utc::now().timestamp()).abs() <= 5, "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()));

    let me = app
        .request(Method::GET, "/api/v1/users/me", Some(token), None)
        .await;
    assert_eq!(body(me, 200).await["data"]["email"], "ann@example.com");

    // Two logins give two distinct tokens (distinct `jti`).
    let again = body(app.login("ann@example.com", "password123").await, 200).await;
    let (_, other) = claims_of(again["data"]["access_token"].as_str().unwrap());
    assert_ne!(other["jti"], claims["jti"]);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_indistinguishable() {
    let app = TestApp::spawn().await;
    body(
        app.register("ann@example.com", "password123", "Ann").await,
        201,
    )
    .await;

    let mut bodies = Vec::new();
    for (email, password) in [
        ("ann@example.com", "wrong-password"),
        ("nobody@example.com", "password123"),
        ("not an email", "password123"),
    ] {
        let response = app.login(email, password).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            header(&response, "www-authenticate").as_deref(),
            Some("Bearer")
        );
        bodies.push(response.text().await.unwrap());
    }
    let first: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(first["success"], false);
    assert_eq!(first["code"], "unauthorized");
    assert!(first["error"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(bodies[0], bodies[1], "wrong password vs unknown email");
    assert_eq!(bodies[0], bodies[2], "wrong password vs malformed email");
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn claims(sub: &str, role: &str, iat: i64, exp: i64) -> Value {
    json!({
        "sub": sub,
        "role": role,
        "iat": iat,
        "exp": exp,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn sign(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token with `header` and `claims` and the given (unchecked) signature part.
fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `GET /users/me` with a raw `Authorization` header value.
async fn me_with(app: &TestApp, authorization: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/api/v1/users/me", app.base))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

async fn assert_refused(app: &TestApp, label: &str, authorization: &str) {
    let response = me_with(app, authorization).await;
    assert_eq!(
        header(&response, "www-authenticate").as_deref(),
        Some("Bearer"),
        "{label}"
    );
    let status = response.status();
    let json: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 401, "{label}: {json}");
    assert_eq!(json["success"], false, "{label}: {json}");
    assert_eq!(json["code"], "unauthorized", "{label}: {json}");
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let sub = ann.id.to_string();
    let now = now();
    let valid = claims(&sub, "user", now, now + 1800);

    // Control: a token signed like the server's own is accepted, so the refusals below are
    // about the forgery, not about how the tokens are built.
    let genuine = sign(Algorithm::HS256, SECRET, &valid);
    let me = body(me_with(&app, &format!("Bearer {genuine}")).await, 200).await;
    assert_eq!(me["data"]["id"], sub);

    let admin_claims = claims(&sub, "admin", now, now + 1800);
    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &valid, ""),
        ),
        (
            "alg none, role admin",
            unsigned(&json!({"alg": "none", "typ": "JWT"}), &admin_claims, ""),
        ),
        (
            "alg None",
            unsigned(&json!({"alg": "None", "typ": "JWT"}), &valid, ""),
        ),
        (
            "HS256 with another key",
            sign(
                Algorithm::HS256,
                "another secret that is also long enough",
                &valid,
            ),
        ),
        (
            "expired an hour ago",
            sign(
                Algorithm::HS256,
                SECRET,
                &claims(&sub, "user", now - 5400, now - 3600),
            ),
        ),
        (
            "expired seconds ago (no leeway)",
            sign(
                Algorithm::HS256,
                SECRET,
                &claims(&sub, "user", now - 1805, now - 5),
            ),
        ),
        (
            "HS512 with the right secret",
            sign(Algorithm::HS512, SECRET, &valid),
        ),
        (
            "HS384 with the right secret",
            sign(Algorithm::HS384, SECRET, &valid),
        ),
        (
            "no exp",
            sign(
                Algorithm::HS256,
                SECRET,
                &json!({"sub": sub, "role": "user", "iat": now, "jti": "x"}),
            ),
        ),
        (
            "unknown user",
            sign(
                Algorithm::HS256,
                SECRET,
                &claims(&uuid::Uuid::new_v4().to_string(), "user", now, now + 1800),
            ),
        ),
        ("garbage", "garbage".to_owned()),
        ("three garbage parts", "not.a.token".to_owned()),
    ];
    // The genuine token with its payload swapped for an admin one keeps a now-wrong signature.
    let signature = genuine.rsplit('.').next().unwrap();
    cases.push((
        "tampered payload",
        unsigned(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &admin_claims,
            signature,
        ),
    ));
    for (label, token) in &cases {
        assert_refused(&app, label, &format!("Bearer {token}")).await;
    }

    for (label, authorization) in [
        ("Basic", "Basic YW5uQGV4YW1wbGUuY29tOnBhc3N3b3JkMTIz"),
        ("empty Bearer", "Bearer "),
        ("scheme only", "Bearer"),
        ("token without scheme", ann.token.as_str()),
        ("empty", ""),
    ] {
        assert_refused(&app, label, authorization).await;
    }

    // After all that, the real token still works.
    body(me_with(&app, &format!("Bearer {}", ann.token)).await, 200).await;
}

#[tokio::test]
async fn an_invalid_authorization_header_is_refused_on_public_reads() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Rain in Rome?", "description": ""}))
        .await;
    let id = market["id"].as_str().unwrap();
    let reads = [
        "/api/v1/markets".to_owned(),
        format!("/api/v1/markets/{id}"),
        "/api/v1/markets/search?query=rain".to_owned(),
    ];
    for path in &reads {
        body(app.get(path).await, 200).await;
        body(
            app.request(Method::GET, path, Some(&ann.token), None).await,
            200,
        )
        .await;
        for authorization in [
            "Bearer garbage".to_owned(),
            "Basic YW5uOnB3".to_owned(),
            format!(
                "Bearer {}",
                unsigned(
                    &json!({"alg": "none"}),
                    &claims(&ann.id.to_string(), "user", now(), now() + 60),
                    ""
                )
            ),
        ] {
            let response = app
                .client
                .get(format!("{}{path}", app.base))
                .header("authorization", &authorization)
                .send()
                .await
                .unwrap();
            assert_eq!(
                header(&response, "www-authenticate").as_deref(),
                Some("Bearer")
            );
            error(response, 401, "unauthorized").await;
        }
    }
}
