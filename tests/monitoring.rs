//! The monitoring kit in `deploy/` is proven against the real thing: the alert rules pass their
//! `promtool` unit tests, the systemd units verify, a fresh instance's first scrape lists every
//! series the service documents, and a real Prometheus scraping a served instance under a short
//! load evaluates every alert rule without error and returns data for every dashboard panel.
//!
//! It runs the binary named by `MARKETS_BIN` (else the one cargo built for this test) on an
//! embedded database in a temporary folder, and Debian's `prometheus`, `promtool` (package
//! `prometheus`, installed by `scripts/services.sh`) and `systemd-analyze`, each on loopback and
//! stopped by its pid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

fn tool(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// A child process, killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 50 ms for up to 60 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let output = Command::new(tool("MARKETS_PROMTOOL", "promtool"))
        .args(["test", "rules"])
        .arg(deploy("prometheus/alerts_test.yml"))
        .output()
        .expect("promtool (Debian package prometheus; scripts/services.sh installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn the_systemd_units_verify() {
    // Point the units at this build: verify checks that ExecStart is executable.
    let folder = tempfile::tempdir().unwrap();
    let binary = std::env::var("MARKETS_BIN").unwrap_or(env!("CARGO_BIN_EXE_markets").to_owned());
    let mut units = Vec::new();
    for unit in ["markets.service", "markets-worker.service"] {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{unit}"))).unwrap();
        let path = folder.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/markets", &binary)).unwrap();
        units.push(path);
    }
    let output = Command::new(tool("MARKETS_SYSTEMD_ANALYZE", "systemd-analyze"))
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && report.trim().is_empty(),
        "{report}"
    );
}

/// A served instance on an embedded database, with `/metrics` on a listener of its own.
struct Instance {
    _server: Running,
    _folder: tempfile::TempDir,
    base: String,
    metrics: String,
}

impl Instance {
    async fn start() -> Self {
        let folder = tempfile::tempdir().unwrap();
        let (api, metrics) = (free_port(), free_port());
        let binary =
            std::env::var("MARKETS_BIN").unwrap_or(env!("CARGO_BIN_EXE_markets").to_owned());
        let child = Command::new(binary)
            .env_clear()
            .current_dir(folder.path())
            .env("BIND_ADDR", format!("127.0.0.1:{api}"))
            .env(
                "MARKETS__METRICS__BIND_ADDR",
                format!("127.0.0.1:{metrics}"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let instance = Self {
            _server: Running(child),
            _folder: folder,
            base: format!("http://127.0.0.1:{api}"),
            metrics: format!("127.0.0.1:{metrics}"),
        };
        let client = reqwest::Client::new();
        let live = format!("{}/health/live", instance.base);
        eventually("the instance serves", async || {
            client
                .get(&live)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
        instance
    }

    async fn scrape(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    /// A little of every kind of traffic: registration, login, creates (and so jobs), cached
    /// and uncached reads, lists, searches, a refusal and a miss.
    async fn load(&self) {
        let client = reqwest::Client::new();
        let url = |path: &str| format!("{}{path}", self.base);
        let account =
            json!({"email": "ops@example.com", "password": "password123", "display_name": "Ops"});
        client
            .post(url("/api/v1/auth/register"))
            .json(&account)
            .send()
            .await
            .unwrap();
        let login: Value = client
            .post(url("/api/v1/auth/login"))
            .json(&account)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["data"]["access_token"].as_str().unwrap().to_owned();
        for n in 0..5 {
            let market = json!({"name": format!("Will it rain {n}?"), "description": "weather"});
            let created: Value = client
                .post(url("/api/v1/markets"))
                .bearer_auth(&token)
                .json(&market)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let path = format!(
                "/api/v1/markets/{}",
                created["data"]["id"].as_str().unwrap()
            );
            for _ in 0..3 {
                client.get(url(&path)).send().await.unwrap();
            }
        }
        for path in [
            "/api/v1/markets",
            "/api/v1/markets/search?query=rain",
            "/nowhere",
        ] {
            client.get(url(path)).send().await.unwrap();
        }
        client
            .post(url("/api/v1/markets"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_fresh_instance_lists_every_documented_series() {
    let instance = Instance::start().await;
    let first = instance.scrape().await;
    for name in markets_app::series::EXPORTED {
        let listed = first
            .lines()
            .any(|line| line.starts_with(name) && !line.starts_with('#'));
        assert!(
            listed,
            "{name} is missing from a fresh instance's first scrape:\n{first}"
        );
        assert!(
            first.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

/// A Prometheus of its own, scraping `target` every second and evaluating the alert rules.
struct Prometheus {
    _server: Running,
    _folder: tempfile::TempDir,
    api: String,
}

impl Prometheus {
    async fn start(target: &str) -> Self {
        let folder = tempfile::tempdir().unwrap();
        let config = folder.path().join("prometheus.yml");
        let rules = deploy("prometheus/alerts.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{rules:?}]\n\
                 scrape_configs:\n  - job_name: markets\n    static_configs: [{{targets: [{target:?}]}}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(tool("MARKETS_PROMETHEUS", "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                folder.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/services.sh installs it)");
        let prometheus = Self {
            _server: Running(child),
            _folder: folder,
            api: format!("http://127.0.0.1:{port}/api/v1"),
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        eventually("Prometheus is ready", async || {
            reqwest::get(&ready)
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
        prometheus
    }

    /// `expr` evaluated now: the result's samples.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let url =
            reqwest::Url::parse_with_params(&format!("{}/query", self.api), [("query", expr)]);
        let response: Value = reqwest::get(url.unwrap())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(response["status"], "success", "{expr}: {response}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn rules(&self) -> Vec<Value> {
        let response: Value = reqwest::get(format!("{}/rules", self.api))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// The metric names an expression reads: identifiers that are neither functions, keywords nor
/// label names in a `by`/`on` clause.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_lowercase()) {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let (word, after) = tail.split_at(end);
        let preceded_by_name_char = rest[..start]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.');
        let grouping = ["by", "on", "without", "ignoring"];
        if grouping.contains(&word) {
            // Skip the clause's label list.
            let close = after.find(')').map_or(after.len(), |close| close + 1);
            rest = &after[close..];
            continue;
        }
        let function = after.trim_start().starts_with('(');
        let keyword = ["and", "or", "unless"].contains(&word);
        let in_labels = rest[..start].matches('{').count() > rest[..start].matches('}').count();
        if word.contains('_') && !function && !keyword && !in_labels && !preceded_by_name_char {
            names.push(word.to_owned());
        }
        rest = after;
    }
    names
}

#[test]
fn metric_names_are_found_in_expressions() {
    assert_eq!(
        metric_names(
            r#"sum by (instance, le) (rate(http_request_duration_seconds_bucket{route="/x"}[5m])) > 1 and on (instance) db_pool_connections{state="idle"} == 0"#
        ),
        [
            "http_request_duration_seconds_bucket",
            "db_pool_connections"
        ]
    );
}

#[tokio::test]
async fn a_real_prometheus_evaluates_every_alert_and_panel_on_a_served_instance() {
    let instance = Instance::start().await;
    let prometheus = Prometheus::start(&instance.metrics).await;
    instance.load().await;
    // Enough scrapes after the load for every rate() to have two samples of it, and every rule
    // evaluated since.
    eventually("three scrapes after the load", async || {
        let samples = prometheus
            .query(r#"count_over_time(up{job="markets"}[3s])"#)
            .await;
        let count = samples.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
        (count >= 3.0).then_some(())
    })
    .await;
    instance.load().await;
    eventually("two more scrapes", async || {
        let samples = prometheus
            .query(r#"count_over_time(up{job="markets"}[2s]) >= 2"#)
            .await;
        (!samples.is_empty()).then_some(())
    })
    .await;

    let rules = eventually("every rule evaluated", async || {
        let rules = prometheus.rules().await;
        let evaluated = !rules.is_empty()
            && rules
                .iter()
                .all(|rule| rule["lastEvaluation"] != "0001-01-01T00:00:00Z");
        evaluated.then_some(rules)
    })
    .await;
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
        let query = rule["query"].as_str().unwrap();
        for name in metric_names(query) {
            let series = prometheus.query(&format!("count({name})")).await;
            assert!(!series.is_empty(), "{}: no series {name}", rule["name"]);
        }
    }

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/markets.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let targets = panels.iter().flat_map(|panel| {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        targets
            .into_iter()
            .map(move |target| (title.clone(), target))
    });
    let mut checked = 0;
    for (title, target) in targets {
        let expr = target["expr"].as_str().unwrap();
        let samples = prometheus.query(expr).await;
        assert!(
            !samples.is_empty(),
            "panel {title:?} returned no data: {expr}"
        );
        checked += 1;
    }
    assert!(checked >= 16, "only {checked} panel queries");
}
