//! Requests to the instances, each one counted and checked as it answers: no 5xx other than a
//! 503, every 503 in the error envelope with `Retry-After`, no stale read of a market the
//! harness wrote.

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tracker::{Seen, Tracker, Verdict};

/// How many examples of each kind of problem are kept for the report.
const EXAMPLES: usize = 5;

/// One answered request.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// `X-Cache`, if sent.
    pub cache: Option<String>,
    /// The body, if JSON.
    pub json: Value,
    /// When the request was sent.
    pub started: Instant,
    /// When the answer had been read.
    pub answered: Instant,
    /// Whether it was a read of a market older than a write that answered before it started.
    pub stale: bool,
}

impl Answer {
    /// Whether it came from the cache.
    pub fn hit(&self) -> bool {
        self.cache.as_deref() == Some("HIT")
    }

    /// The `data.id` of a market body.
    pub fn id(&self) -> Option<String> {
        self.json["data"]["id"].as_str().map(str::to_owned)
    }
}

/// What the requests of one scenario added up to.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Requests that answered, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused or reset, or no answer within 10 s).
    pub unanswered: u64,
    /// 5xx other than 503.
    pub server_errors: u64,
    /// 503s without `Retry-After` or the error envelope.
    pub bad_unavailable: u64,
    /// Market reads served from the cache, and not.
    pub hits: u64,
    pub misses: u64,
    /// Reads older than a write that answered before they started (see [`Tracker`]).
    pub stale: u64,
    /// 404s of markets that exist.
    pub wrong: u64,
    /// A few examples of each problem above.
    pub examples: BTreeMap<&'static str, Vec<String>>,
    /// Markets whose create answered 201: (id, name).
    pub created: Vec<(String, String)>,
    /// Names of every create sent.
    pub create_names: Vec<String>,
    /// Markets a DELETE was sent for.
    pub deletes: Vec<String>,
}

impl Counts {
    /// Every request sent.
    pub fn requests(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.unanswered
    }

    fn problem(&mut self, kind: &'static str, example: String) {
        let examples = self.examples.entry(kind).or_default();
        if examples.len() < EXAMPLES {
            examples.push(example);
        }
    }
}

/// A client of the instances, sharing its counts and the write histories.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    token: String,
    counts: Arc<Mutex<Counts>>,
    tracker: Arc<Tracker>,
}

impl Http {
    /// A client acting, for writes, with `token`.
    pub fn new(client: reqwest::Client, token: String) -> Self {
        Self {
            client,
            token,
            counts: Arc::default(),
            tracker: Arc::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    fn count(&self, record: impl FnOnce(&mut Counts)) {
        record(&mut self.counts.lock().unwrap());
    }

    /// Sends a request (writes with the token, reads anonymous) and checks its status.
    async fn send(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Answer> {
        let mut request = self.client.request(method.clone(), format!("{base}{path}"));
        if method != Method::GET {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let started = Instant::now();
        let what = format!("{method} {base}{path}");
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.count(|counts| {
                    counts.unanswered += 1;
                    counts.problem("unanswered", format!("{what}: {error}"));
                });
                return None;
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let (cache, retry_after) = (header("x-cache"), header("retry-after"));
        let text = response.text().await.unwrap_or_default();
        let answer = Answer {
            status,
            cache,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            started,
            answered: Instant::now(),
            stale: false,
        };
        self.count(|counts| {
            *counts.statuses.entry(status).or_default() += 1;
            if status >= 500 && status != 503 {
                counts.server_errors += 1;
                counts.problem("5xx other than 503", format!("{what}: {status} {text}"));
            }
            if status == 503 && !well_formed_unavailable(retry_after.as_deref(), &answer.json) {
                counts.bad_unavailable += 1;
                counts.problem(
                    "503 without Retry-After or envelope",
                    format!("{what}: {retry_after:?} {text}"),
                );
            }
        });
        Some(answer)
    }

    /// `GET /api/v1/markets/{id}`, checked against the write history of `id`.
    pub async fn market(&self, base: &str, id: &str) -> Option<Answer> {
        let mut answer = self
            .send(base, Method::GET, &format!("/api/v1/markets/{id}"), None)
            .await?;
        let seen = match answer.status {
            200 => revision(&answer.json).map(Seen::Revision),
            404 => Some(Seen::Missing),
            _ => None,
        };
        if let Some(seen) = seen {
            let verdict = self
                .tracker
                .check(id, answer.started, answer.answered, seen);
            answer.stale = matches!(verdict, Verdict::Stale(_));
            let from = answer.cache.clone().unwrap_or_default();
            self.count(|counts| {
                match (seen, answer.hit()) {
                    (Seen::Revision(_), true) => counts.hits += 1,
                    (Seen::Revision(_), false) => counts.misses += 1,
                    (Seen::Missing, _) => {}
                }
                match verdict {
                    Verdict::Fresh => {}
                    Verdict::Stale(why) => {
                        counts.stale += 1;
                        counts.problem("stale reads", format!("{base}: {why} (X-Cache: {from})"));
                    }
                    Verdict::Wrong(why) => {
                        counts.wrong += 1;
                        counts.problem("404 of a live market", format!("{base}: {why}"));
                    }
                }
            });
        }
        Some(answer)
    }

    /// `GET path` (a list or a search), checked for its status only.
    pub async fn read(&self, base: &str, path: &str) -> Option<Answer> {
        self.send(base, Method::GET, path, None).await
    }

    /// Creates a market named `name` at revision 0; remembers it if it answered 201.
    pub async fn create(&self, base: &str, name: &str) -> Option<Answer> {
        self.count(|counts| counts.create_names.push(name.to_owned()));
        let body = json!({ "name": name, "description": "rev 0", "volume": 1.5 });
        let answer = self
            .send(base, Method::POST, "/api/v1/markets", Some(body))
            .await?;
        if let (201, Some(id)) = (answer.status, answer.id()) {
            self.tracker.created(&id, answer.answered);
            self.count(|counts| counts.created.push((id, name.to_owned())));
        }
        Some(answer)
    }

    /// PATCHes `id` to its next revision; on 200 that revision is established.
    pub async fn patch(&self, base: &str, id: &str) -> Option<Answer> {
        let revision = self.tracker.next_revision(id);
        let body = json!({ "description": format!("rev {revision}") });
        let answer = self
            .send(
                base,
                Method::PATCH,
                &format!("/api/v1/markets/{id}"),
                Some(body),
            )
            .await?;
        if answer.status == 200 {
            self.tracker.patched(id, revision, answer.answered);
        }
        Some(answer)
    }

    /// DELETEs `id`; on 204 its absence is established.
    pub async fn delete(&self, base: &str, id: &str) -> Option<Answer> {
        self.tracker.delete_sent(id);
        self.count(|counts| counts.deletes.push(id.to_owned()));
        let answer = self
            .send(base, Method::DELETE, &format!("/api/v1/markets/{id}"), None)
            .await?;
        if answer.status == 204 {
            self.tracker.deleted(id, answer.answered);
        }
        Some(answer)
    }

    /// `GET /health/ready` (not counted: its 503 is the readiness document, not an error).
    pub async fn readiness(&self, base: &str) -> Option<Readiness> {
        let response = self
            .client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let json: Value = response.json().await.ok()?;
        let field = |pointer: &str| {
            json.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        Some(Readiness {
            code: status,
            status: field("/status"),
            database: field("/checks/database"),
            cache: field("/checks/cache"),
            embeddings: field("/checks/embeddings"),
            retry_after,
        })
    }
}

/// What `/health/ready` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Its HTTP status.
    pub code: u16,
    /// `ok`, `degraded` or `unavailable`.
    pub status: String,
    /// `up` or `down`.
    pub database: String,
    pub cache: String,
    pub embeddings: String,
    /// Whether it sent `Retry-After`.
    pub retry_after: bool,
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (database {}, cache {}, embeddings {})",
            self.code, self.status, self.database, self.cache, self.embeddings
        )
    }
}

/// A 503 as the contract has it: `Retry-After` in seconds and the error envelope.
fn well_formed_unavailable(retry_after: Option<&str>, json: &Value) -> bool {
    retry_after.is_some_and(|seconds| seconds.parse::<u64>().is_ok())
        && json["success"] == false
        && json["code"] == "service_unavailable"
        && json["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty())
}

/// The revision in a market body's description (`rev N`).
fn revision(json: &Value) -> Option<u64> {
    json["data"]["description"]
        .as_str()?
        .strip_prefix("rev ")?
        .parse()
        .ok()
}

/// A client whose requests give up after 10 s: an answer that slow counts as none.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
