//! The zero-setup path: the binary with no environment at all, in an empty folder, serves the
//! whole API from an embedded SQLite file, and keeps its data across a restart.
//!
//! It runs the binary named by `MARKETS_BIN` (`scripts/test.sh` points it at the one its test
//! build made), else the one cargo built for this test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

/// Where the binary listens with no configuration.
const BASE: &str = "http://127.0.0.1:8080";

/// The binary, run in `folder` with no environment variables at all.
fn markets(folder: &Path) -> Command {
    let binary = std::env::var("MARKETS_BIN").unwrap_or(env!("CARGO_BIN_EXE_markets").to_owned());
    let mut command = Command::new(binary);
    command.env_clear().current_dir(folder);
    command
}

/// A running `markets` (no subcommand: it serves) and the log lines it printed before it
/// started listening.
struct Server {
    child: Child,
    startup: Vec<String>,
    logs: BufReader<ChildStderr>,
}

impl Server {
    fn start(folder: &Path) -> Self {
        let mut child = markets(folder)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Self {
            startup: Vec::new(),
            logs: BufReader::new(child.stderr.take().unwrap()),
            child,
        };
        server.startup = server.logs_until(&["markets listening"]);
        server
    }

    /// Reads log lines up to the first that contains every one of `needles`.
    fn logs_until(&mut self, needles: &[&str]) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                self.logs.read_line(&mut line).unwrap() > 0,
                "markets exited before logging {needles:?}: {lines:#?}"
            );
            let found = needles.iter().all(|needle| line.contains(needle));
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    fn printed(&self, text: &str) -> bool {
        self.startup.iter().any(|line| line.contains(text))
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn call(method: reqwest::Method, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut request = reqwest::Client::new().request(method, format!("{BASE}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let json: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {json}");
    json
}

fn create_admin(folder: &Path) {
    let mut child = markets(folder)
        .args(["create-admin", "--email", "root@example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"an admin password\n").unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}

#[tokio::test]
async fn the_binary_serves_from_an_embedded_database_with_no_setup_and_keeps_its_data() {
    let folder = tempfile::tempdir().unwrap();
    let mut server = Server::start(folder.path());
    assert!(server.printed("sqlite"), "{:#?}", server.startup);
    assert!(
        server.printed("markets create-admin"),
        "a first start says how to create an administrator: {:#?}",
        server.startup
    );
    assert!(folder.path().join("data/markets.db").exists());

    create_admin(folder.path());
    let post = reqwest::Method::POST;
    let login = json!({"email": "root@example.com", "password": "an admin password"});
    let admin = call(post.clone(), "/api/v1/auth/login", None, login).await;
    let admin_token = admin["data"]["access_token"].as_str().unwrap();
    let me = call(
        reqwest::Method::GET,
        "/api/v1/users/me",
        Some(admin_token),
        Value::Null,
    )
    .await;
    assert_eq!(me["data"]["role"], "admin");

    let ann = json!({"email": "ann@example.com", "password": "password123", "display_name": "Ann"});
    call(post.clone(), "/api/v1/auth/register", None, ann).await;
    let login = json!({"email": "ann@example.com", "password": "password123"});
    let session = call(post.clone(), "/api/v1/auth/login", None, login).await;
    let token = session["data"]["access_token"].as_str().unwrap();
    let market = json!({"name": "Will the harbour freeze over", "description": "Winter ice"});
    let created = call(post, "/api/v1/markets", Some(token), market).await;
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    // The market's embedding job has run (the background indexer may have been first).
    server.logs_until(&["job done", "index_market_embedding"]);
    let search = "/api/v1/markets/search?query=harbour%20ice";
    let found = call(reqwest::Method::GET, search, None, Value::Null).await;
    assert_eq!(found["data"][0]["id"], id.as_str(), "{found}");
    server.stop();

    let restarted = Server::start(folder.path());
    assert!(!restarted.printed("markets create-admin"));
    let path = format!("/api/v1/markets/{id}");
    let kept = call(reqwest::Method::GET, &path, None, Value::Null).await;
    assert_eq!(kept["data"]["name"], "Will the harbour freeze over");
    restarted.stop();
}
