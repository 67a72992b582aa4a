//! Black-box tests of the `markets` binary: configuration errors, migrations, `create-admin`,
//! and `serve` from start to graceful stop, against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use markets_domain::audit::{AuditAction, AuditLog};
use markets_domain::auth::PasswordHash;
use markets_domain::market::PageSize;
use markets_domain::permission::Role;
use markets_domain::user::{DisplayName, Email, NewUser, UserId, UserRepository};
use markets_postgres::PgUserRepository;
use markets_postgres::testing::TestDatabase;
use markets_redis::testing::PrivateRedis;
use secrecy::ExposeSecret;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

/// The binary, configured for tests against `db`, with nothing inherited that could leak in.
fn markets(db: &TestDatabase) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_markets"));
    command
        .env_clear()
        .env("APP_ENV", "test")
        .env("DATABASE_URL", db.settings().url.expose_secret())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    command
}

fn run(mut command: Command) -> Output {
    command.output().expect("the markets binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tables(db: &TestDatabase) -> Vec<String> {
    let url = db.settings().url.expose_secret().to_owned();
    let output = Command::new("psql")
        .args([
            &url,
            "-Atc",
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        ])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    let db = TestDatabase::unmigrated().await;
    for (name, value, key) in [
        ("BIND_ADDR", "nowhere", "server.bind_addr"),
        ("APP_ENV", "staging", "APP_ENV"),
        ("MARKETS__DATABASE__POOL_SIZE", "many", "database.pool_size"),
    ] {
        let mut command = markets(&db);
        command.env(name, value);
        let output = run(command);
        assert_eq!(output.status.code(), Some(1), "{name}={value}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{name}={value}: {message}");
        assert!(
            message.starts_with("error: invalid configuration"),
            "{message}"
        );
        assert!(message.contains(key), "{name}={value}: {message}");
    }
    assert!(
        tables(&db).is_empty(),
        "a failed start-up touched the database"
    );
}

#[tokio::test]
async fn production_refuses_to_start_without_a_jwt_secret() {
    let db = TestDatabase::unmigrated().await;
    let mut command = markets(&db);
    command.env("APP_ENV", "production");
    let output = run(command);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("JWT_SECRET"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn migrate_applies_the_schema_once() {
    let db = TestDatabase::unmigrated().await;
    let mut command = markets(&db);
    command.arg("migrate");
    let first = run(command);
    assert!(first.status.success(), "{}", stderr(&first));
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    ))
    .unwrap()
    .count();
    assert_eq!(
        stderr(&first).matches("applied migration").count(),
        migrations
    );
    assert!(tables(&db).contains(&"markets".to_owned()));

    let mut command = markets(&db);
    command.arg("migrate");
    let second = run(command);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("up to date"),
        "{}",
        stderr(&second)
    );
}

#[tokio::test]
async fn warm_cache_loads_the_markets_with_most_volume_in_one_call() {
    let db = TestDatabase::new().await;
    let redis = PrivateRedis::start();
    let settings = redis.settings();
    let url = db.settings().url.expose_secret().to_owned();
    let seeded = Command::new("psql")
        .args([
            &url,
            "-qc",
            "INSERT INTO users (id, email, display_name, password_hash) VALUES \
            ('00000000-0000-7000-8000-000000000001', 'a@example.com', 'A', 'x'); \
            INSERT INTO markets (id, name, description, volume, creator_id) \
            SELECT gen_random_uuid(), 'm' || n, '', n, '00000000-0000-7000-8000-000000000001' \
            FROM generate_series(1, 150) AS n",
        ])
        .status()
        .unwrap();
    assert!(seeded.success());
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let mut command = markets(&db);
    command
        .arg("warm-cache")
        .env("REDIS_URL", &settings.url)
        .env("MARKETS__REDIS__KEY_PREFIX", &settings.key_prefix);
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "100");
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "100");
    let stats = redis.cli(&["INFO", "commandstats"]);
    let script_calls: u64 = stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    // One script call for all 100 (two if the script had to be loaded: NOSCRIPT, then retry).
    assert!((1..=2).contains(&script_calls), "{stats}");
    let cached = |order: &str| {
        let sql = format!("SELECT id FROM markets ORDER BY volume {order} LIMIT 1");
        let out = Command::new("psql")
            .args([&url, "-Atc", &sql])
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        redis
            .cli(&["EXISTS", &format!("{}market:{id}", settings.key_prefix)])
            .trim()
            == "1"
    };
    assert!(cached("DESC"), "the market with the most volume is cached");
    assert!(!cached("ASC"), "the one with the least is not");
}

fn seed_markets(db: &TestDatabase, count: u32) {
    let url = db.settings().url.expose_secret().to_owned();
    let sql = format!(
        "INSERT INTO users (id, email, display_name, password_hash) \
           VALUES ('00000000-0000-7000-8000-000000000009', 's@example.com', 'S', 'x'); \
         INSERT INTO markets (id, name, description, creator_id) \
           SELECT gen_random_uuid(), 'Market ' || n, 'About ' || n, \
                  '00000000-0000-7000-8000-000000000009' \
           FROM generate_series(1, {count}) AS n"
    );
    let seeded = Command::new("psql")
        .args([&url, "-qc", &sql])
        .status()
        .unwrap();
    assert!(seeded.success());
}

fn pending_embeddings(db: &TestDatabase) -> u32 {
    let url = db.settings().url.expose_secret().to_owned();
    let sql = "SELECT count(*) FROM markets WHERE embedding_stale OR embedding IS NULL";
    let out = Command::new("psql")
        .args([&url, "-Atc", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn reindex_embeds_every_market_and_resumes() {
    let db = TestDatabase::new().await;
    seed_markets(&db, 150);
    assert_eq!(pending_embeddings(&db), 150);
    let mut command = markets(&db);
    command.args(["reindex", "--resume"]);
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(pending_embeddings(&db), 0);

    let mut command = markets(&db);
    command.arg("reindex");
    let again = run(command);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("reindexed"), "{}", stderr(&again));
    assert_eq!(pending_embeddings(&db), 0);
}

/// The size of the `embedding` column's `vector(N)`.
fn column_dimensions(db: &TestDatabase) -> u32 {
    let url = db.settings().url.expose_secret().to_owned();
    let sql = "SELECT atttypmod FROM pg_attribute \
               WHERE attrelid = 'markets'::regclass AND attname = 'embedding'";
    let out = Command::new("psql")
        .args([&url, "-Atc", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Seeds `count` markets and embeds them with the default (1536-dimension) hashing embedder.
fn embedded_markets(db: &TestDatabase, count: u32) {
    seed_markets(db, count);
    let mut command = markets(db);
    command.args(["reindex", "--resume"]);
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(column_dimensions(db), 1536);
}

/// Runs `subcommand` against `db` with a 384-dimension embedder.
fn run_with_384_dimensions(db: &TestDatabase, subcommand: &str) -> Output {
    let mut command = markets(db);
    command
        .arg(subcommand)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("MARKETS__OPENAI__DIMENSIONS", "384");
    run(command)
}

#[tokio::test]
async fn serve_refuses_an_embedder_that_does_not_fit_the_stored_embeddings() {
    let db = TestDatabase::new().await;
    embedded_markets(&db, 3);
    let output = run_with_384_dimensions(&db, "serve");
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    let last = message.lines().last().unwrap_or_default();
    assert!(
        last.contains("384 dimensions but the index stores 1536"),
        "{message}"
    );
    assert!(last.contains("markets reindex"), "{message}");
}

#[tokio::test]
async fn reindex_switches_the_index_to_another_provider() {
    let db = TestDatabase::new().await;
    embedded_markets(&db, 20);
    let output = run_with_384_dimensions(&db, "reindex");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(column_dimensions(&db), 384);
    assert_eq!(pending_embeddings(&db), 0);
}

#[tokio::test]
async fn the_model_provider_needs_a_model_directory_naming_the_key() {
    let db = TestDatabase::new().await;
    let missing = std::env::temp_dir().join("markets-no-model-here");
    for model_dir in [None, Some(missing.to_str().unwrap())] {
        let mut command = markets(&db);
        command
            .arg("reindex")
            .env("MARKETS__SEARCH__PROVIDER", "minilm");
        if let Some(dir) = model_dir {
            command.env("MARKETS__SEARCH__MODEL_DIR", dir);
        }
        let output = run(command);
        assert_eq!(output.status.code(), Some(1), "{model_dir:?}");
        let message = stderr(&output);
        assert!(message.contains("search.model_dir"), "{message}");
    }
}

#[tokio::test]
async fn operators_list_count_and_retry_dead_jobs() {
    let db = TestDatabase::new().await;
    let url = db.settings().url.expose_secret().to_owned();
    let job = "01a20c00-0000-7000-8000-00000000dead";
    let sql = format!(
        "INSERT INTO jobs (id, kind, subject_id, state, attempts, last_error) VALUES \
         ('{job}', 'notify_market_created', gen_random_uuid(), 'dead', 5, 'smtp said no')"
    );
    assert!(
        Command::new("psql")
            .args([&url, "-qc", &sql])
            .status()
            .unwrap()
            .success()
    );

    let mut list = markets(&db);
    list.args(["jobs", "list", "--dead"]);
    let listed = run(list);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(job) && listed.contains("smtp said no"),
        "{listed}"
    );

    let mut stats = markets(&db);
    stats.args(["jobs", "stats"]);
    let stats = run(stats);
    assert!(stats.status.success(), "{}", stderr(&stats));
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    let notify: Vec<&str> = stats
        .lines()
        .find(|line| line.starts_with("notify_market_created"))
        .unwrap_or_else(|| panic!("no line for the kind in {stats}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        notify[1..4],
        ["0", "0", "1"],
        "queued, running, dead: {stats}"
    );

    let mut retry = markets(&db);
    retry.args(["jobs", "retry", job]);
    let retried = run(retry);
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert_eq!(String::from_utf8_lossy(&retried.stdout).trim(), "1");
    let state = Command::new("psql")
        .args([
            &url,
            "-Atc",
            &format!("SELECT state, attempts FROM jobs WHERE id = '{job}'"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "queued|0");

    let mut all = markets(&db);
    all.args(["jobs", "retry", "--all-dead"]);
    let none_left = run(all);
    assert_eq!(String::from_utf8_lossy(&none_left.stdout).trim(), "0");
}

#[tokio::test]
async fn create_admin_reads_the_password_from_env_or_stdin() {
    let db = TestDatabase::unmigrated().await;
    let mut command = markets(&db);
    command
        .args([
            "create-admin",
            "--email",
            "Root@Example.com",
            "--password-env",
            "ADMIN_PW",
        ])
        .env("ADMIN_PW", "a long admin password");
    let output = run(command);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("a long admin password"),
        "password logged"
    );

    let users = PgUserRepository::new(db.pool());
    let email = Email::parse("root@example.com").unwrap();
    let admin = users
        .find_by_email(&email)
        .await
        .unwrap()
        .expect("admin stored");
    assert_eq!(admin.user.role, Role::Admin);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        admin.user.id.to_string()
    );
    assert!(admin.password_hash.as_str().starts_with("$argon2id$"));

    let mut command = markets(&db);
    command
        .args(["create-admin", "--email", "second@example.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed on stdin\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let second = Email::parse("second@example.com").unwrap();
    assert!(users.find_by_email(&second).await.unwrap().is_some());
}

#[tokio::test]
async fn create_admin_refuses_weak_passwords_for_new_accounts() {
    let db = TestDatabase::new().await;
    let mut command = markets(&db);
    command
        .args([
            "create-admin",
            "--email",
            "root@example.com",
            "--password-env",
            "PW",
        ])
        .env("PW", "short");
    let weak = run(command);
    assert_eq!(weak.status.code(), Some(1));
    assert!(stderr(&weak).contains("password"), "{}", stderr(&weak));
}

/// An existing account is promoted, with an audit event, without a password being read; running
/// it again changes nothing and still succeeds.
#[tokio::test]
async fn create_admin_promotes_an_existing_account() {
    let db = TestDatabase::new().await;
    let users = PgUserRepository::new(db.pool());
    let ann = users
        .create(NewUser {
            id: UserId::new(),
            email: Email::parse("ann@example.com").unwrap(),
            display_name: DisplayName::parse("Ann").unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
            role: Role::User,
            email_verified: true,
        })
        .await
        .unwrap();
    for _ in 0..2 {
        let mut command = markets(&db);
        command
            .args(["create-admin", "--email", "ANN@example.com"])
            .stdin(Stdio::null());
        let output = run(command);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            ann.id.to_string()
        );
    }
    let stored = users.find_by_id(ann.id).await.unwrap().unwrap();
    assert_eq!(stored.role, Role::Admin);
    assert_eq!(stored.display_name.as_str(), "Ann", "the account is kept");
    let audit = markets_postgres::PgAuditLog::new(db.pool());
    let page = audit.page(None, PageSize::DEFAULT).await.unwrap();
    let promotions: Vec<_> = page
        .events
        .iter()
        .filter(|e| e.action == AuditAction::RoleChanged)
        .collect();
    assert_eq!(promotions.len(), 1, "one promotion, audited once");
    assert_eq!(
        promotions[0].target_id.as_deref(),
        Some(ann.id.to_string().as_str())
    );
    assert_eq!(promotions[0].details["previous_role"], "user");
    assert_eq!(promotions[0].details["role"], "admin");
}

/// A served binary, the address it logged and its log stream.
type Served = (Child, String, BufReader<std::process::ChildStderr>);

/// Starts `serve` on a free port.
fn start(db: &TestDatabase) -> Served {
    start_with(markets(db))
}

/// Starts `command` (the binary, configured) as `serve` on a free port.
fn start_with(mut command: Command) -> Served {
    command
        .arg("serve")
        .env("BIND_ADDR", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = command.spawn().unwrap();
    let mut logs = BufReader::new(child.stderr.take().unwrap());
    let address = listening_address(&mut logs);
    (child, address, logs)
}

/// Reads log lines until the start-up line, and returns the address it names.
fn listening_address(logs: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            logs.read_line(&mut line).unwrap() > 0,
            "serve exited before listening"
        );
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["message"] == "markets listening" {
            return event["address"].as_str().unwrap().to_owned();
        }
    }
}

/// Reads the rest of a server's log on a thread, while it runs: at `debug` a server writes
/// more than a pipe holds, so a log read only after exit would block it for good.
fn collect(mut logs: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut captured = String::new();
        logs.read_to_string(&mut captured).unwrap();
        captured
    })
}

fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let provider = MockServer::start().await;
    let mut vector = vec![0.0_f32; 1536];
    vector[0] = 1.0;
    let slow_embedding = ResponseTemplate::new(200)
        .set_body_json(serde_json::json!({"data": [{"embedding": vector, "index": 0}]}))
        .set_delay(std::time::Duration::from_millis(1500));
    Mock::given(method("POST"))
        .respond_with(slow_embedding)
        .mount(&provider)
        .await;

    let db = TestDatabase::new().await;
    let mut command = markets(&db);
    command
        .arg("serve")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", format!("{}/v1", provider.uri()))
        .env("MARKETS__SEARCH__QUERY_TIMEOUT_MS", "10000")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = command.spawn().unwrap();
    let mut logs = BufReader::new(child.stderr.take().unwrap());
    let address = listening_address(&mut logs);

    let search = tokio::spawn(async move {
        reqwest::get(format!("http://{address}/api/v1/markets/search?query=slow"))
            .await
            .unwrap()
    });
    // Once the provider has the query's embedding request, the search is in flight.
    while provider
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        tokio::task::yield_now().await;
    }
    terminate(&child);
    let response = search.await.unwrap();
    assert_eq!(response.status(), 200, "the in-flight request completed");
    assert_eq!(response.headers()["x-search-mode"], "semantic");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    const DB_PASSWORD: &str = "DbPassw0rdNeverLogged";
    const USER_PASSWORD: &str = "UserPassw0rdNeverLogged";
    let db = TestDatabase::new().await;
    // Trust authentication ignores the password, so the URL works and still carries a secret.
    let mut url = url::Url::parse(db.settings().url.expose_secret()).unwrap();
    url.set_password(Some(DB_PASSWORD)).unwrap();
    let mut command = markets(&db);
    command
        .env("DATABASE_URL", url.as_str())
        .env("JWT_SECRET", "JwtSecretNeverLogged-0123456789abcdef")
        .env("RUST_LOG", "debug");
    let (mut child, address, logs) = start_with(command);
    let logs = collect(logs);
    let client = reqwest::Client::new();
    let credentials = serde_json::json!({"email": "ann@example.com", "password": USER_PASSWORD});
    let mut registration = credentials.clone();
    registration["display_name"] = "Ann".into();
    let base = format!("http://{address}/api/v1/auth");
    let registered = client
        .post(format!("{base}/register"))
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let login: serde_json::Value = client
        .post(format!("{base}/login"))
        .json(&credentials)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["access_token"].as_str().unwrap().to_owned();
    let me = client
        .get(format!("http://{address}/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    terminate(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let captured = logs.join().unwrap();
    assert!(
        captured.contains("request completed"),
        "the requests were logged"
    );
    for secret in [
        DB_PASSWORD,
        USER_PASSWORD,
        token.as_str(),
        "JwtSecretNeverLogged",
        "$argon2",
    ] {
        assert!(!captured.contains(secret), "{secret} leaked into the log");
    }

    // A failing connection's error names the server, not the password.
    let mut unreachable = url.clone();
    unreachable.set_port(Some(1)).unwrap();
    let mut command = markets(&db);
    command
        .arg("migrate")
        .env("DATABASE_URL", unreachable.as_str())
        .env("RUST_LOG", "debug");
    let failed = run(command);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        !stderr(&failed).contains(DB_PASSWORD),
        "{}",
        stderr(&failed)
    );
}

/// The dropped-lines counter a server reports on `/metrics`.
async fn dropped_log_lines(client: &reqwest::Client, address: &str) -> u64 {
    let metrics = client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("log_lines_dropped_total "))
        .expect("the counter is exported")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_reader_that_stops_reading_never_stalls_requests() {
    const BATCH: usize = 100;
    let db = TestDatabase::new().await;
    let mut command = markets(&db);
    command.env("RUST_LOG", "debug");
    let (child, address, logs) = start_with(command);
    let mut child = KilledOnDrop(child);
    // From here on nobody reads the log: the pipe fills, then the writer's buffer.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let mut answered = 0;
    while dropped_log_lines(&client, &address).await == 0 {
        let batch = (0..BATCH).map(|_| {
            let request = client
                .get(format!("http://{address}/api/v1/markets"))
                .send();
            async move {
                request
                    .await
                    .expect("answered while the log is stalled")
                    .status()
            }
        });
        let statuses = futures_util::future::join_all(batch).await;
        // Every request is answered; on a loaded machine some may be shed with a 503 (the pool
        // had no connection in time), which is an answer too, never a stall.
        let failed: Vec<_> = statuses
            .iter()
            .filter(|status| !status.is_success() && status.as_u16() != 503)
            .collect();
        assert!(failed.is_empty(), "after {answered} answers: {failed:?}");
        answered += BATCH;
        assert!(answered < 200_000, "no log line was ever dropped");
    }
    terminate(&child.0);
    assert_eq!(child.0.wait().unwrap().code(), Some(0), "stopped cleanly");
    drop(logs);
}

/// A server killed when the test ends, so that a failed assertion (a server stalled on its
/// log, say) leaves no process behind; after a clean stop the kill is a no-op.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_migrates_answers_liveness_and_stops_cleanly_on_sigterm() {
    let db = TestDatabase::unmigrated().await;
    let (mut child, address, logs) = start(&db);
    assert!(
        tables(&db).contains(&"users".to_owned()),
        "serve did not migrate"
    );

    let response = reqwest::get(format!("http://{address}/health/live"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ok" }));

    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let rest: Vec<String> = logs.lines().map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("markets stopped")),
        "{rest:?}"
    );
}
