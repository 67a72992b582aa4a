//! Creating, reading, changing, deleting and searching markets, and who may do what.

use markets_domain::permission::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, body, error, header, invalid, keys};

const MARKET_KEYS: [&str; 8] = [
    "created_at",
    "creator",
    "description",
    "id",
    "name",
    "status",
    "updated_at",
    "volume",
];

const HIT_KEYS: [&str; 7] = [
    "created_at",
    "creator",
    "id",
    "name",
    "score",
    "status",
    "volume",
];

fn id_of(market: &Value) -> String {
    market["id"].as_str().unwrap().to_owned()
}

fn path_of(market: &Value) -> String {
    format!("/api/v1/markets/{}", id_of(market))
}

fn utc(json: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let at = chrono::DateTime::parse_from_rfc3339(json.as_str().unwrap()).unwrap();
    assert_eq!(at.offset().local_minus_utc(), 0, "UTC: {json}");
    at
}

async fn create(app: &TestApp, user: &TestUser, fields: Value) -> reqwest::Response {
    app.request(
        Method::POST,
        "/api/v1/markets",
        Some(&user.token),
        Some(fields),
    )
    .await
}

async fn patch(app: &TestApp, user: &TestUser, path: &str, fields: Value) -> reqwest::Response {
    app.request(Method::PATCH, path, Some(&user.token), Some(fields))
        .await
}

async fn delete(app: &TestApp, user: &TestUser, path: &str) -> reqwest::Response {
    app.request(Method::DELETE, path, Some(&user.token), None)
        .await
}

#[tokio::test]
async fn create_returns_the_market_with_location_and_defaults() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let response = create(
        &app,
        &ann,
        json!({"name": "  Will it rain in Rome?  ", "description": ""}),
    )
    .await;
    let location = header(&response, "location");
    let json = body(response, 201).await;
    assert_eq!(json["success"], true);
    let market = &json["data"];
    assert_eq!(keys(market), MARKET_KEYS);
    let id = id_of(market);
    uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(location, Some(format!("/api/v1/markets/{id}")));
    assert_eq!(market["name"], "Will it rain in Rome?");
    assert_eq!(market["description"], "");
    assert_eq!(market["status"], "open");
    assert!(market["volume"].is_number(), "{market}");
    assert_eq!(market["volume"].as_f64(), Some(0.0));
    assert_eq!(keys(&market["creator"]), ["display_name", "id"]);
    assert_eq!(market["creator"]["id"], ann.id.to_string());
    assert_eq!(market["creator"]["display_name"], "ann");
    assert!(utc(&market["updated_at"]) >= utc(&market["created_at"]));

    let fetched = body(app.get(&location.unwrap()).await, 200).await;
    assert_eq!(fetched["data"], *market);
}

#[tokio::test]
async fn volumes_keep_two_decimal_places_exactly() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    for (sent, expected) in [
        ("12.5", 12.5),
        ("0.01", 0.01),
        ("9999999999999.99", 9_999_999_999_999.99),
        ("1234567.89", 1_234_567.89),
        ("42", 42.0),
    ] {
        let raw = format!(r#"{{"name": "Volume {sent}", "description": "", "volume": {sent}}}"#);
        let response = app
            .client
            .post(format!("{}/api/v1/markets", app.base))
            .bearer_auth(&ann.token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let created = body(response, 201).await;
        assert_eq!(created["data"]["volume"].as_f64(), Some(expected), "{sent}");
        // Read back as text: the decimal itself, not a rounded neighbour.
        let text = app
            .get(&path_of(&created["data"]))
            .await
            .text()
            .await
            .unwrap();
        let volume = text
            .split("\"volume\":")
            .nth(1)
            .unwrap()
            .split([',', '}'])
            .next()
            .unwrap();
        assert_eq!(
            volume.trim().trim_end_matches(".0"),
            sent,
            "exact decimal: {text}"
        );
    }
}

#[tokio::test]
async fn invalid_markets_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let cases = [
        (json!({"name": "No description"}), vec!["description"]),
        (json!({"description": "no name"}), vec!["name"]),
        (
            json!({"name": "x".repeat(201), "description": ""}),
            vec!["name"],
        ),
        (json!({"name": "   ", "description": ""}), vec!["name"]),
        (
            json!({"name": "ok", "description": "d".repeat(5001)}),
            vec!["description"],
        ),
        (
            json!({"name": "x".repeat(201), "description": "d".repeat(5001)}),
            vec!["name", "description"],
        ),
        (
            json!({"name": "ok", "description": "", "volume": 1.234}),
            vec!["volume"],
        ),
        (
            json!({"name": "ok", "description": "", "volume": -1}),
            vec!["volume"],
        ),
        (
            json!({"name": "ok", "description": "", "volume": 10_000_000_000_000_u64}),
            vec!["volume"],
        ),
        (
            json!({"name": "ok", "description": "", "status": "bogus"}),
            vec!["status"],
        ),
        (
            json!({"name": "ok", "description": "", "status": "Open"}),
            vec!["status"],
        ),
    ];
    for (fields, expected) in cases {
        invalid(create(&app, &ann, fields).await, &expected).await;
    }
    // Nothing was created by the refused requests.
    let list = body(app.get("/api/v1/markets").await, 200).await;
    assert_eq!(list["meta"]["total"], 0);

    // The bounds themselves are accepted.
    let longest = app
        .market(
            &ann,
            json!({"name": "n".repeat(200), "description": "d".repeat(5000),
                   "status": "closed", "volume": 0}),
        )
        .await;
    assert_eq!(longest["name"].as_str().unwrap().chars().count(), 200);
    assert_eq!(
        longest["description"].as_str().unwrap().chars().count(),
        5000
    );
    assert_eq!(longest["status"], "closed");
}

#[tokio::test]
async fn every_invalid_market_field_is_listed_at_once() {
    // The contract: `details` lists each field, not just the first one found.
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    invalid(
        create(
            &app,
            &ann,
            json!({"name": "x".repeat(201), "description": "", "volume": 1.234, "status": "bogus"}),
        )
        .await,
        &["name", "volume", "status"],
    )
    .await;
    let path = path_of(
        &app.market(&ann, json!({"name": "ok", "description": ""}))
            .await,
    );
    invalid(
        patch(
            &app,
            &ann,
            &path,
            json!({"name": "", "volume": -1, "status": "bogus"}),
        )
        .await,
        &["name", "volume", "status"],
    )
    .await;
}

#[tokio::test]
async fn anonymous_callers_can_read_but_not_write() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Rain?", "description": ""}))
        .await;
    let path = path_of(&market);

    let fields = json!({"name": "Anonymous", "description": ""});
    for (method, target, body) in [
        (Method::POST, "/api/v1/markets", Some(fields.clone())),
        (
            Method::PATCH,
            path.as_str(),
            Some(json!({"name": "Hijacked"})),
        ),
        (Method::DELETE, path.as_str(), None),
    ] {
        let response = app.request(method.clone(), target, None, body).await;
        assert_eq!(
            header(&response, "www-authenticate").as_deref(),
            Some("Bearer"),
            "{method}"
        );
        error(response, 401, "unauthorized").await;
    }
    let list = body(app.get("/api/v1/markets").await, 200).await;
    assert_eq!(list["meta"]["total"], 1);
    let fetched = body(app.get(&path).await, 200).await;
    assert_eq!(fetched["data"]["name"], "Rain?");
}

#[tokio::test]
async fn owners_change_their_markets_and_strangers_may_not() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let bob = app.user("bob", Role::User).await;
    let market = app
        .market(&ann, json!({"name": "Ann's market", "description": ""}))
        .await;
    let path = path_of(&market);

    let changed = body(
        patch(&app, &ann, &path, json!({"name": "Renamed"})).await,
        200,
    )
    .await;
    assert_eq!(changed["data"]["name"], "Renamed");

    error(
        patch(&app, &bob, &path, json!({"name": "Bob's now"})).await,
        403,
        "permission_denied",
    )
    .await;
    let fetched = body(app.get(&path).await, 200).await;
    assert_eq!(fetched["data"]["name"], "Renamed");
    assert_eq!(fetched["data"]["creator"]["id"], ann.id.to_string());

    // Neither a stranger nor the owner may delete with role `user`.
    error(delete(&app, &bob, &path).await, 403, "permission_denied").await;
    error(delete(&app, &ann, &path).await, 403, "permission_denied").await;
    body(app.get(&path).await, 200).await;
}

#[tokio::test]
async fn moderators_change_and_delete_anyones_markets() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let moderator = app.user("mod", Role::Moderator).await;
    let market = app
        .market(&ann, json!({"name": "Ann's market", "description": "x"}))
        .await;
    let path = path_of(&market);

    let changed = body(
        patch(&app, &moderator, &path, json!({"status": "closed"})).await,
        200,
    )
    .await;
    assert_eq!(changed["data"]["status"], "closed");
    assert_eq!(changed["data"]["creator"]["id"], ann.id.to_string());

    // Moderators hold `write` too.
    app.market(
        &moderator,
        json!({"name": "Mod's market", "description": ""}),
    )
    .await;

    let response = delete(&app, &moderator, &path).await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    error(app.get(&path).await, 404, "not_found").await;
}

#[tokio::test]
async fn admins_delete_and_the_market_is_gone() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let admin = app.user("root", Role::Admin).await;
    let market = app
        .market(&ann, json!({"name": "Doomed", "description": ""}))
        .await;
    let path = path_of(&market);
    let id = id_of(&market);

    assert_eq!(delete(&app, &admin, &path).await.status(), 204);
    let gone = error(app.get(&path).await, 404, "not_found").await;
    assert_eq!(gone["error"], format!("Market with id {id} not found"));
    let again = error(delete(&app, &admin, &path).await, 404, "not_found").await;
    assert_eq!(again["error"], format!("Market with id {id} not found"));
    error(
        patch(&app, &ann, &path, json!({"name": "Zombie"})).await,
        404,
        "not_found",
    )
    .await;
    let list = body(app.get("/api/v1/markets").await, 200).await;
    assert_eq!(list["meta"]["total"], 0);
}

#[tokio::test]
async fn patch_changes_only_the_given_fields() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let original = app
        .market(
            &ann,
            json!({"name": "Original", "description": "Keep me", "volume": 1.5}),
        )
        .await;
    let path = path_of(&original);

    let changed = body(patch(&app, &ann, &path, json!({"volume": 2.25})).await, 200).await;
    let changed = &changed["data"];
    assert_eq!(keys(changed), MARKET_KEYS);
    assert_eq!(changed["volume"].as_f64(), Some(2.25));
    for field in [
        "id",
        "name",
        "description",
        "status",
        "creator",
        "created_at",
    ] {
        assert_eq!(changed[field], original[field], "{field}");
    }
    assert!(utc(&changed["updated_at"]) > utc(&original["updated_at"]));

    let changed = body(
        patch(
            &app,
            &ann,
            &path,
            json!({"name": "  Trimmed  ", "status": "closed", "description": ""}),
        )
        .await,
        200,
    )
    .await;
    let changed = &changed["data"];
    assert_eq!(changed["name"], "Trimmed");
    assert_eq!(changed["status"], "closed");
    assert_eq!(changed["description"], "");
    assert_eq!(changed["volume"].as_f64(), Some(2.25));

    // And it stuck.
    let fetched = body(app.get(&path).await, 200).await;
    assert_eq!(fetched["data"], *changed);
}

#[tokio::test]
async fn empty_null_and_invalid_patches_are_refused() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let market = app
        .market(
            &ann,
            json!({"name": "Stable", "description": "d", "volume": 3}),
        )
        .await;
    let path = path_of(&market);

    let empty = error(
        patch(&app, &ann, &path, json!({})).await,
        422,
        "validation_failed",
    )
    .await;
    assert!(!crate::helpers::detail_fields(&empty).is_empty(), "{empty}");
    for (fields, expected) in [
        (json!({"name": null}), vec!["name"]),
        (
            json!({"volume": null, "status": null}),
            vec!["volume", "status"],
        ),
        (json!({"description": null}), vec!["description"]),
        (json!({"name": ""}), vec!["name"]),
        (json!({"name": "x".repeat(201)}), vec!["name"]),
        (json!({"status": "bogus"}), vec!["status"]),
        (json!({"volume": -1}), vec!["volume"]),
        (json!({"volume": 0.001}), vec!["volume"]),
    ] {
        invalid(patch(&app, &ann, &path, fields).await, &expected).await;
    }
    let fetched = body(app.get(&path).await, 200).await;
    assert_eq!(fetched["data"], market);
}

#[tokio::test]
async fn resolved_markets_are_frozen_but_ownership_is_checked_first() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let bob = app.user("bob", Role::User).await;
    let moderator = app.user("mod", Role::Moderator).await;
    let market = app
        .market(&ann, json!({"name": "Settled", "description": ""}))
        .await;
    let path = path_of(&market);
    let resolved = body(
        patch(&app, &ann, &path, json!({"status": "resolved"})).await,
        200,
    )
    .await;
    assert_eq!(resolved["data"]["status"], "resolved");

    error(
        patch(&app, &ann, &path, json!({"name": "Changed"})).await,
        400,
        "bad_request",
    )
    .await;
    error(
        patch(&app, &ann, &path, json!({"status": "open"})).await,
        400,
        "bad_request",
    )
    .await;
    error(
        patch(&app, &moderator, &path, json!({"volume": 1})).await,
        400,
        "bad_request",
    )
    .await;
    // A stranger learns nothing about the state: 403, not 400.
    error(
        patch(&app, &bob, &path, json!({"name": "Changed"})).await,
        403,
        "permission_denied",
    )
    .await;
    let fetched = body(app.get(&path).await, 200).await;
    assert_eq!(fetched["data"], resolved["data"]);

    // Created resolved, it is just as frozen.
    let born = app
        .market(
            &ann,
            json!({"name": "Born settled", "description": "", "status": "resolved"}),
        )
        .await;
    error(
        patch(&app, &ann, &path_of(&born), json!({"name": "x"})).await,
        400,
        "bad_request",
    )
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let admin = app.user("root", Role::Admin).await;
    let id = uuid::Uuid::new_v4();
    let path = format!("/api/v1/markets/{id}");

    let missing = error(app.get(&path).await, 404, "not_found").await;
    assert_eq!(missing["error"], format!("Market with id {id} not found"));
    error(
        patch(&app, &ann, &path, json!({"name": "x"})).await,
        404,
        "not_found",
    )
    .await;
    error(delete(&app, &admin, &path).await, 404, "not_found").await;

    let malformed = "/api/v1/markets/not-a-uuid";
    invalid(app.get(malformed).await, &["id"]).await;
    invalid(
        patch(&app, &ann, malformed, json!({"name": "x"})).await,
        &["id"],
    )
    .await;
    invalid(delete(&app, &admin, malformed).await, &["id"]).await;
    invalid(app.get("/api/v1/markets/12345").await, &["id"]).await;
}

async fn search(app: &TestApp, query: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/markets/search?{query}")).await
}

fn names(hits: &Value) -> Vec<String> {
    hits.as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_returns_scored_summaries_best_first() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    for (name, description) in [
        (
            "Rain in London tomorrow?",
            "Will it rain? Rain gauges at Heathrow.",
        ),
        ("Election results", "Which party wins the most seats?"),
        ("Sunny weekend in Madrid", "No rain expected at all"),
        ("Rain in Paris on Sunday?", ""),
        ("Stock market close", "Index above 5000"),
    ] {
        app.market(&ann, json!({"name": name, "description": description}))
            .await;
    }
    app.settle().await;

    let response = search(&app, "query=rain").await;
    let mode = header(&response, "x-search-mode");
    assert!(
        matches!(mode.as_deref(), Some("semantic" | "fallback")),
        "X-Search-Mode: {mode:?}"
    );
    let json = body(response, 200).await;
    assert_eq!(keys(&json), ["data", "success"], "no meta on search");
    assert_eq!(json["success"], true);
    let hits = json["data"].as_array().unwrap();
    assert!(hits.len() >= 3, "{json}");
    let mut previous = f64::INFINITY;
    for hit in hits {
        assert_eq!(keys(hit), HIT_KEYS, "summaries with a score: {hit}");
        let score = hit["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 1.0, "score in (0, 1]: {hit}");
        assert!(score <= previous, "best first: {json}");
        previous = score;
    }
    let found = names(&json["data"]);
    for rainy in [
        "Rain in London tomorrow?",
        "Rain in Paris on Sunday?",
        "Sunny weekend in Madrid",
    ] {
        assert!(found.contains(&rainy.to_owned()), "{rainy}: {found:?}");
    }
    assert!(found[0].starts_with("Rain in"), "{found:?}");
    if mode.as_deref() == Some("fallback") {
        // Text search only returns matches.
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            found[2], "Sunny weekend in Madrid",
            "name counts more: {found:?}"
        );
    }

    // The query is trimmed.
    let padded = body(search(&app, "query=%20%20rain%20").await, 200).await;
    assert_eq!(names(&padded["data"]), found);
}

#[tokio::test]
async fn search_respects_the_limit() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    for n in 0..12 {
        app.market(
            &ann,
            json!({"name": format!("Rain market {n}"), "description": "rain"}),
        )
        .await;
    }
    app.settle().await;
    let default = body(search(&app, "query=rain").await, 200).await;
    assert_eq!(default["data"].as_array().unwrap().len(), 10, "default 10");
    let two = body(search(&app, "query=rain&limit=2").await, 200).await;
    assert_eq!(two["data"].as_array().unwrap().len(), 2);
    let fifty = body(search(&app, "query=rain&limit=50").await, 200).await;
    assert_eq!(fifty["data"].as_array().unwrap().len(), 12);
    let one = body(search(&app, "query=rain&limit=1").await, 200).await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_searches_name_the_field() {
    let app = TestApp::spawn().await;
    let long = "q".repeat(501);
    for (query, fields) in [
        ("", vec!["query"]),
        ("limit=5", vec!["query"]),
        ("query=", vec!["query"]),
        ("query=%20%20", vec!["query"]),
        (&format!("query={long}"), vec!["query"]),
        ("query=rain&limit=0", vec!["limit"]),
        ("query=rain&limit=51", vec!["limit"]),
        ("query=rain&limit=-1", vec!["limit"]),
        ("query=rain&limit=ten", vec!["limit"]),
        ("query=%20&limit=0", vec!["query", "limit"]),
    ] {
        invalid(search(&app, query).await, &fields).await;
    }
    let longest = format!("query={}", "q".repeat(500));
    body(search(&app, &longest).await, 200).await;
}
