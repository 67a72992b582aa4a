//! Listing markets: offset and cursor paging, sorting and filtering, and their validation.

use markets_domain::permission::Role;
use serde_json::{Value, json};
use std::cmp::Ordering;
use std::collections::HashSet;

use crate::helpers::{TestApp, TestUser, body, invalid, keys};

const SUMMARY_KEYS: [&str; 6] = ["created_at", "creator", "id", "name", "status", "volume"];

/// A seeded market as the tests need it.
#[derive(Debug, Clone)]
struct Seeded {
    id: String,
    uuid: uuid::Uuid,
    status: String,
    volume: f64,
    created_at: chrono::DateTime<chrono::FixedOffset>,
}

impl Seeded {
    fn from_json(market: &Value) -> Self {
        let id = market["id"].as_str().unwrap().to_owned();
        Self {
            uuid: id.parse().unwrap(),
            id,
            status: market["status"].as_str().unwrap().to_owned(),
            volume: market["volume"].as_f64().unwrap(),
            created_at: chrono::DateTime::parse_from_rfc3339(
                market["created_at"].as_str().unwrap(),
            )
            .unwrap(),
        }
    }
}

const SORTS: [&str; 4] = ["-created_at", "created_at", "volume", "-volume"];

/// The ids of `markets` in the order `sort` lists them: by the key, ties broken by id in the
/// same direction.
fn expected(markets: &[Seeded], sort: &str, status: Option<&str>) -> Vec<String> {
    let mut markets: Vec<&Seeded> = markets
        .iter()
        .filter(|m| status.is_none_or(|s| m.status == s))
        .collect();
    let (field, descending) = match sort.strip_prefix('-') {
        Some(field) => (field, true),
        None => (sort, false),
    };
    markets.sort_by(|a, b| {
        let by_key = match field {
            "created_at" => a.created_at.cmp(&b.created_at),
            "volume" => a.volume.partial_cmp(&b.volume).unwrap_or(Ordering::Equal),
            other => panic!("unknown sort {other}"),
        };
        let order = by_key.then(a.uuid.cmp(&b.uuid));
        if descending { order.reverse() } else { order }
    });
    markets.iter().map(|m| m.id.clone()).collect()
}

/// Seven markets: four open, two closed, one resolved, all of different volumes.
async fn seed(app: &TestApp, user: &TestUser) -> Vec<Seeded> {
    let mut seeded = Vec::new();
    for (n, (status, volume)) in [
        ("open", 5.0),
        ("closed", 0.5),
        ("open", 100.0),
        ("resolved", 42.42),
        ("open", 7.0),
        ("closed", 0.01),
        ("open", 1000.0),
    ]
    .into_iter()
    .enumerate()
    {
        let market = app
            .market(
                user,
                json!({"name": format!("Market {n}"), "description": "long text",
                       "status": status, "volume": volume}),
            )
            .await;
        seeded.push(Seeded::from_json(&market));
    }
    // Creation order is created_at order (the default sort relies on it below).
    assert!(
        seeded
            .windows(2)
            .all(|pair| pair[0].created_at < pair[1].created_at),
        "{seeded:?}"
    );
    seeded
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn list(app: &TestApp, query: &str) -> Value {
    body(app.get(&format!("/api/v1/markets?{query}")).await, 200).await
}

#[tokio::test]
async fn offset_pages_carry_meta_and_summaries_without_description() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let seeded = seed(&app, &ann).await;

    let page = list(&app, "page=1&page_size=3").await;
    assert_eq!(keys(&page), ["data", "meta", "success"]);
    assert_eq!(page["success"], true);
    assert_eq!(page["meta"], json!({"page": 1, "page_size": 3, "total": 7}));
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    for summary in page["data"].as_array().unwrap() {
        assert_eq!(keys(summary), SUMMARY_KEYS, "{summary}");
        assert_eq!(keys(&summary["creator"]), ["display_name", "id"]);
        assert_eq!(summary["creator"]["id"], ann.id.to_string());
        assert_eq!(summary["creator"]["display_name"], "ann");
    }

    // The defaults: page 1 of 20, newest first.
    let all = list(&app, "").await;
    assert_eq!(all["meta"], json!({"page": 1, "page_size": 20, "total": 7}));
    let newest_first = expected(&seeded, "-created_at", None);
    assert_eq!(ids(&all), newest_first);
    assert_eq!(newest_first[0], seeded[6].id);
    let empty = body(app.get("/api/v1/markets?").await, 200).await;
    assert_eq!(ids(&empty), newest_first);
}

#[tokio::test]
async fn offset_pages_walk_every_sort_in_order() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let seeded = seed(&app, &ann).await;

    for sort in [
        None,
        Some("-created_at"),
        Some("created_at"),
        Some("volume"),
        Some("-volume"),
    ] {
        let sort_param = sort.map(|s| format!("&sort={s}")).unwrap_or_default();
        let mut walked = Vec::new();
        for page in 1..=3 {
            let json = list(&app, &format!("page={page}&page_size=3{sort_param}")).await;
            assert_eq!(
                json["meta"],
                json!({"page": page, "page_size": 3, "total": 7}),
                "{sort:?}"
            );
            let expected_len = if page == 3 { 1 } else { 3 };
            assert_eq!(json["data"].as_array().unwrap().len(), expected_len);
            walked.extend(ids(&json));
        }
        assert_eq!(
            walked,
            expected(&seeded, sort.unwrap_or("-created_at"), None),
            "{sort:?}"
        );

        let beyond = list(&app, &format!("page=4&page_size=3{sort_param}")).await;
        assert_eq!(beyond["data"], json!([]));
        assert_eq!(
            beyond["meta"],
            json!({"page": 4, "page_size": 3, "total": 7})
        );
    }
    let far = list(&app, "page=500").await;
    assert_eq!(far["data"], json!([]));
    assert_eq!(far["meta"]["total"], 7);

    // Volumes really are in order, not just in the order we predicted.
    let by_volume = list(&app, "sort=-volume").await;
    let volumes: Vec<f64> = by_volume["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["volume"].as_f64().unwrap())
        .collect();
    assert_eq!(volumes, [1000.0, 100.0, 42.42, 7.0, 5.0, 0.5, 0.01]);
}

#[tokio::test]
async fn the_status_filter_changes_the_total() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let seeded = seed(&app, &ann).await;

    for (status, total) in [("open", 4), ("closed", 2), ("resolved", 1)] {
        let json = list(&app, &format!("status={status}&page_size=2&sort=volume")).await;
        assert_eq!(
            json["meta"],
            json!({"page": 1, "page_size": 2, "total": total}),
            "{status}"
        );
        for summary in json["data"].as_array().unwrap() {
            assert_eq!(summary["status"], status);
        }
        let everything = list(&app, &format!("status={status}&sort=volume")).await;
        assert_eq!(ids(&everything), expected(&seeded, "volume", Some(status)));
    }
}

/// Follows `next_cursor` from the first page to the last; returns the ids in order and the
/// number of pages.
async fn walk(app: &TestApp, query: &str) -> (Vec<String>, usize) {
    let mut walked = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{query}&cursor={cursor}"),
            None => query.to_owned(),
        };
        let page = list(app, &url).await;
        pages += 1;
        assert_eq!(keys(&page["meta"]), ["next_cursor"], "{page}");
        for summary in page["data"].as_array().unwrap() {
            assert_eq!(keys(summary), SUMMARY_KEYS, "{summary}");
        }
        walked.extend(ids(&page));
        match &page["meta"]["next_cursor"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor: {other}"),
        }
        assert!(pages <= 20, "runaway cursor: {walked:?}");
    }
    (walked, pages)
}

fn assert_unique(ids: &[String]) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates: {ids:?}");
}

#[tokio::test]
async fn cursors_walk_everything_in_order() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let seeded = seed(&app, &ann).await;

    for sort in SORTS {
        let (walked, pages) = walk(&app, &format!("limit=3&sort={sort}")).await;
        assert_unique(&walked);
        assert_eq!(walked, expected(&seeded, sort, None), "{sort}");
        assert_eq!(pages, 3, "{sort}");
    }
    // Without `sort`, newest first.
    let (walked, _) = walk(&app, "limit=3").await;
    assert_eq!(walked, expected(&seeded, "-created_at", None));

    // A page that ends exactly at the end of the list has no next cursor.
    let exact = list(&app, "limit=7").await;
    assert_eq!(exact["meta"], json!({"next_cursor": null}));
    assert_eq!(exact["data"].as_array().unwrap().len(), 7);
    // A limit above the count: everything on one page, in the default order.
    let first = list(&app, "limit=20").await;
    assert_eq!(ids(&first), expected(&seeded, "-created_at", None));

    // With a status filter.
    for sort in ["volume", "-created_at"] {
        let (walked, pages) = walk(&app, &format!("limit=2&status=open&sort={sort}")).await;
        assert_unique(&walked);
        assert_eq!(walked, expected(&seeded, sort, Some("open")), "{sort}");
        assert_eq!(pages, 2);
    }
    let (closed, _) = walk(&app, "limit=1&status=closed&sort=-volume").await;
    assert_eq!(closed, expected(&seeded, "-volume", Some("closed")));
}

#[tokio::test]
async fn cursors_break_ties_without_skipping_or_repeating() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let mut seeded = Vec::new();
    for n in 0..7 {
        let volume = if n % 3 == 0 { 1.0 } else { 2.5 };
        let market = app
            .market(
                &ann,
                json!({"name": format!("Tie {n}"), "description": "", "volume": volume}),
            )
            .await;
        seeded.push(Seeded::from_json(&market));
    }
    for sort in ["volume", "-volume"] {
        for limit in [1, 2, 3] {
            let (walked, _) = walk(&app, &format!("limit={limit}&sort={sort}")).await;
            assert_unique(&walked);
            assert_eq!(walked, expected(&seeded, sort, None), "{sort} by {limit}");
        }
    }
}

#[tokio::test]
async fn cursors_are_stable_under_concurrent_inserts() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let seeded = seed(&app, &ann).await;

    // Newest first: the newcomer sorts before the cursor, so it is neither seen nor does it
    // push an already-seen market onto the next page.
    let order = expected(&seeded, "-created_at", None);
    let first = list(&app, "limit=3&sort=-created_at").await;
    assert_eq!(ids(&first), order[..3]);
    let newcomer = app
        .market(&ann, json!({"name": "Newcomer", "description": ""}))
        .await;
    let cursor = first["meta"]["next_cursor"].as_str().unwrap();
    let second = list(&app, &format!("limit=3&sort=-created_at&cursor={cursor}")).await;
    assert_eq!(ids(&second), order[3..6]);
    let cursor = second["meta"]["next_cursor"].as_str().unwrap();
    let third = list(&app, &format!("limit=3&sort=-created_at&cursor={cursor}")).await;
    assert_eq!(ids(&third), order[6..]);
    assert_eq!(third["meta"]["next_cursor"], Value::Null);

    // Oldest first: a market inserted mid-walk shows up once, at the end.
    let order = expected(&seeded, "created_at", None);
    let first = list(&app, "limit=3&sort=created_at").await;
    assert_eq!(ids(&first), order[..3]);
    let late = app
        .market(&ann, json!({"name": "Late", "description": ""}))
        .await;
    let mut walked = ids(&first);
    let mut cursor = first["meta"]["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let page = list(&app, &format!("limit=3&sort=created_at&cursor={cursor}")).await;
        walked.extend(ids(&page));
        match page["meta"]["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_unique(&walked);
    let mut all = order.clone();
    all.push(newcomer["id"].as_str().unwrap().to_owned());
    all.push(late["id"].as_str().unwrap().to_owned());
    assert_eq!(walked, all);
}

#[tokio::test]
async fn mixed_or_foreign_cursors_are_refused() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    seed(&app, &ann).await;

    let by_volume = list(&app, "limit=2&sort=volume").await;
    let volume_cursor = by_volume["meta"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let open = list(&app, "limit=2&status=open").await;
    let open_cursor = open["meta"]["next_cursor"].as_str().unwrap().to_owned();
    // The cursors do work where they were minted.
    list(&app, &format!("limit=2&sort=volume&cursor={volume_cursor}")).await;
    list(&app, &format!("limit=2&status=open&cursor={open_cursor}")).await;

    let get = |query: String| {
        let app = &app;
        async move { app.get(&format!("/api/v1/markets?{query}")).await }
    };
    for query in [
        format!("page=1&cursor={volume_cursor}&sort=volume"),
        "page=2&limit=3".to_owned(),
        "page_size=3&limit=3".to_owned(),
        format!("page_size=3&cursor={open_cursor}&status=open"),
    ] {
        let json = crate::helpers::error(get(query.clone()).await, 422, "validation_failed").await;
        assert!(
            !crate::helpers::detail_fields(&json).is_empty(),
            "{query}: {json}"
        );
    }
    for query in [
        format!("sort=-created_at&cursor={volume_cursor}"),
        format!("sort=-volume&cursor={volume_cursor}"),
        format!("cursor={volume_cursor}"),
        format!("cursor={open_cursor}"),
        format!("status=closed&cursor={open_cursor}"),
        "cursor=garbage!!".to_owned(),
        "cursor=bm90IGEgY3Vyc29y".to_owned(),
        "cursor=".to_owned(),
        format!("cursor={}x", &volume_cursor[..volume_cursor.len() - 3]),
    ] {
        invalid(get(query).await, &["cursor"]).await;
    }
}

/// v1.1 "Paging limits": a cursor the service did not mint is 422, however well-formed; one
/// minted by another instance under the same secret works.
#[tokio::test]
async fn forged_cursors_are_refused_and_any_instance_honours_minted_ones() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let app = TestApp::spawn().await;
    let ann = app.user("ann", Role::User).await;
    let seeded = seed(&app, &ann).await;
    // A position of the client's choosing, in the layout cursors had before they were signed.
    let newest = seeded.iter().max_by_key(|m| m.created_at).unwrap();
    let micros = newest.created_at.timestamp_micros() + 1;
    let forged = URL_SAFE_NO_PAD.encode(format!("v1|-created_at|*|{micros}|{}", newest.id));
    invalid(
        app.get(&format!("/api/v1/markets?cursor={forged}")).await,
        &["cursor"],
    )
    .await;
    let forged_audit = URL_SAFE_NO_PAD.encode(format!("a1|{}", uuid::Uuid::now_v7()));
    let admin = app.user("root", Role::Admin).await;
    let response = app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/admin/audit?cursor={forged_audit}"),
            Some(&admin.token),
            None,
        )
        .await;
    invalid(response, &["cursor"]).await;

    let minted = list(&app, "limit=2").await["meta"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = TestApp::spawn().await;
    list(&other, &format!("limit=2&cursor={minted}")).await;
}

#[tokio::test]
async fn invalid_list_parameters_name_the_field() {
    let app = TestApp::spawn().await;
    for (query, fields) in [
        ("page=0", vec!["page"]),
        ("page=-1", vec!["page"]),
        ("page=one", vec!["page"]),
        ("page_size=0", vec!["page_size"]),
        ("page_size=101", vec!["page_size"]),
        ("page_size=ten", vec!["page_size"]),
        ("limit=0", vec!["limit"]),
        ("limit=101", vec!["limit"]),
        ("sort=name", vec!["sort"]),
        ("sort=-name", vec!["sort"]),
        ("sort=VOLUME", vec!["sort"]),
        ("status=bogus", vec!["status"]),
        ("status=Open", vec!["status"]),
        ("sort=name&status=bogus", vec!["sort", "status"]),
        ("limit=0&cursor=garbage!!", vec!["limit", "cursor"]),
    ] {
        invalid(app.get(&format!("/api/v1/markets?{query}")).await, &fields).await;
    }
    for query in [
        "page_size=100",
        "page_size=1",
        "limit=100",
        "limit=1",
        "page=1",
    ] {
        list(&app, query).await;
    }
}

#[tokio::test]
async fn every_invalid_list_parameter_is_listed_at_once() {
    // The contract: `details` lists each field, not just the first one found.
    let app = TestApp::spawn().await;
    for (query, fields) in [
        ("page=0&page_size=101", vec!["page", "page_size"]),
        ("status=bogus&page=0", vec!["status", "page"]),
        ("sort=name&limit=0", vec!["sort", "limit"]),
    ] {
        invalid(app.get(&format!("/api/v1/markets?{query}")).await, &fields).await;
    }
}

#[tokio::test]
async fn offset_paging_stops_at_ten_thousand_rows_and_points_at_cursors() {
    let app = TestApp::spawn().await;
    for query in ["page=501", "page=101&page_size=100", "page=4294967295"] {
        let refused = invalid(
            app.get(&format!("/api/v1/markets?{query}")).await,
            &["page"],
        )
        .await;
        let message = refused["details"][0]["message"].as_str().unwrap();
        assert!(message.contains("cursor"), "{query}: {refused}");
    }
    for query in [
        "page=500",
        "page=100&page_size=100",
        "page=1000&page_size=10",
    ] {
        let page = list(&app, query).await;
        assert_eq!(page["data"], json!([]), "{query}");
    }
    let document = body(app.get("/openapi.json").await, 200).await;
    let parameters = document["paths"]["/api/v1/markets"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let page = parameters.iter().find(|p| p["name"] == "page").unwrap();
    let described = page["description"].as_str().unwrap();
    assert!(
        described.contains("10000") && described.contains("cursor"),
        "the document states the cap: {page}"
    );
}
