//! Behind a real reverse proxy: Debian's nginx (installed by `scripts/services.sh up`), started
//! per test on a free loopback port with a configuration of its own, appending the client to
//! `X-Forwarded-For` and passing every other header through untouched, as deployed. The client
//! connects from 127.0.0.3 and nginx reaches the app from 127.0.0.1, the one trusted proxy; a
//! client forging either forwarding header must still be 127.0.0.3.

use markets_domain::permission::Role;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, body};

/// The address the test client connects from: loopback, but not the trusted proxy.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A private nginx in front of one app, stopped (by pid) when dropped.
struct Nginx {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

/// nginx's binary: `MARKETS_NGINX` (what `scripts/services.sh up` prints), else Debian's path.
fn nginx_binary() -> PathBuf {
    let binary = std::env::var_os("MARKETS_NGINX")
        .map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from);
    assert!(
        binary.exists(),
        "nginx is not installed at {}: run scripts/services.sh up (installs nginx-light)",
        binary.display()
    );
    binary
}

fn config(dir: &Path, port: u16, upstream: &str) -> String {
    let dir = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"
    )
}

impl Nginx {
    /// nginx on a free loopback port, proxying to `app`.
    async fn start(app: &TestApp) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = app.base.trim_start_matches("http://");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, upstream)).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        nginx.wait_until_listening(port).await;
        nginx
    }

    /// Polls the port until nginx accepts (it has no readiness signal of its own).
    async fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("error.log"));
                panic!("nginx exited with {status}: {log:?}");
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request through nginx from [`CLIENT`].
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        reqwest::Client::builder()
            .local_address(CLIENT)
            .build()
            .unwrap()
            .request(method, format!("{}{path}", self.base))
    }
}

/// An app trusting nginx (127.0.0.1) for `X-Forwarded-For`, with `extra` configuration.
async fn behind_nginx(extra: &[(&str, &str)]) -> (TestApp, Nginx) {
    let mut vars = vec![("MARKETS__RATE_LIMIT__TRUSTED_PROXIES", "127.0.0.1/32")];
    vars.extend_from_slice(extra);
    let app = TestApp::spawn_configured(&vars).await;
    let nginx = Nginx::start(&app).await;
    (app, nginx)
}

/// The forged header of attempt `n`: `Forwarded` on even attempts, `X-Forwarded-For` on odd.
fn forge(request: RequestBuilder, n: u32) -> RequestBuilder {
    if n.is_multiple_of(2) {
        request.header("forwarded", format!("for=1.2.3.{n}"))
    } else {
        request.header("x-forwarded-for", format!("1.2.3.{n}"))
    }
}

#[tokio::test]
async fn forged_forwarding_headers_do_not_escape_the_search_limit() {
    let (_app, nginx) = behind_nginx(&[("MARKETS__RATE_LIMIT__SEARCH__LIMIT", "5")]).await;
    let mut passed = 0;
    for n in 1..=12 {
        let search = nginx.request(Method::GET, "/api/v1/markets/search?query=rain");
        let status = forge(search, n).send().await.unwrap().status();
        assert!(matches!(status.as_u16(), 200 | 429), "{status}");
        passed += u32::from(status == 200);
    }
    assert_eq!(passed, 5, "searches let through with forged headers");
}

#[tokio::test]
async fn forged_forwarding_headers_do_not_escape_the_login_limit_nor_reach_the_trail() {
    let (app, nginx) = behind_nginx(&[("MARKETS__RATE_LIMIT__LOGIN__LIMIT", "4")]).await;
    let mut passed = 0;
    for n in 1..=12 {
        // A new email each time, so that only the per-address budget can refuse.
        let body = json!({"email": format!("nobody{n}@example.com"), "password": "wrong"});
        let login = nginx
            .request(Method::POST, "/api/v1/auth/login")
            .json(&body);
        let status = forge(login, n).send().await.unwrap().status();
        assert!(matches!(status.as_u16(), 401 | 429), "{status}");
        passed += u32::from(status == 401);
    }
    assert_eq!(passed, 4, "bad logins let through with forged headers");

    let admin = app.user("boss", Role::Admin).await;
    let trail = body(
        app.request(
            Method::GET,
            "/api/v1/admin/audit?limit=100",
            Some(&admin.token),
            None,
        )
        .await,
        200,
    )
    .await;
    let recorded: Vec<&Value> = trail["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| {
            event["action"]
                .as_str()
                .is_some_and(|action| action.starts_with("auth.login"))
        })
        .map(|event| &event["ip"])
        .collect();
    assert!(!recorded.is_empty(), "{trail}");
    assert!(
        recorded.iter().all(|ip| **ip == CLIENT.to_string()),
        "{recorded:?}"
    );
}
