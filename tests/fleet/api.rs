//! Requests to the fleet, through nginx or to one instance directly (the base URL says which),
//! each from a client address it names in `X-Forwarded-For`: nginx appends the peer
//! (127.0.0.1) and the instances trust it, so the address counts as the client's and each
//! scenario spends rate-limit budgets of its own.

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::time::Duration;

/// The password of every user the tests register.
pub const PASSWORD: &str = "fleet password 1";

/// A made-up client address (10.x.y.z, random), whose budgets no other scenario or run (the
/// limits last a minute) has spent.
pub fn client_address() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    format!("10.{}.{}.{}", bytes[0], bytes[1], bytes[2])
}

/// A registered user and one of its sessions.
#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub token: String,
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// Header `name`, if sent as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Header `name` as a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.header(name)?.parse().ok()
    }

    /// The JSON body, if it is JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The JSON body if the status is `status`, else what was answered.
    pub fn want(self, status: u16) -> Result<Value, String> {
        if self.status == status {
            Ok(self.json())
        } else {
            Err(format!("{} (wanted {status}): {}", self.status, self.body))
        }
    }
}

/// A client of the fleet.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
}

impl Api {
    /// A client whose requests give up after 10 s: an answer that slow counts as none.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a reqwest client");
        Self { client }
    }

    /// `method base path` from the client at `address`.
    fn request(&self, method: Method, base: &str, path: &str, address: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{base}{path}"))
            .header("x-forwarded-for", address)
    }

    /// Sends `request`: the answer, or why there was none.
    async fn send(&self, request: RequestBuilder) -> Result<Reply, String> {
        let response = request.send().await.map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(|error| error.to_string())?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET base path`, anonymous, from a fresh address.
    pub async fn get(&self, base: &str, path: &str) -> Result<Reply, String> {
        let request = self.request(Method::GET, base, path, &client_address());
        self.send(request).await
    }

    /// `POST /api/v1/auth/login` as `email` from `address`.
    pub async fn login(&self, base: &str, email: &str, address: &str) -> Result<Reply, String> {
        let body = json!({ "email": email, "password": PASSWORD });
        let request = self.request(Method::POST, base, "/api/v1/auth/login", address);
        self.send(request.json(&body)).await
    }

    /// A session of `email` (from a fresh address).
    pub async fn session(&self, base: &str, email: &str) -> Result<String, String> {
        let json = self
            .login(base, email, &client_address())
            .await?
            .want(200)?;
        json["data"]["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access_token in {json}"))
    }

    /// Registers a new user and logs it in, through `base`.
    pub async fn user(&self, base: &str) -> User {
        let email = format!("fleet-{}@example.com", uuid::Uuid::new_v4().simple());
        let body = json!({ "email": email, "password": PASSWORD, "display_name": "Fleet" });
        let request = self.request(
            Method::POST,
            base,
            "/api/v1/auth/register",
            &client_address(),
        );
        let registered = self.send(request.json(&body)).await;
        registered
            .and_then(|reply| reply.want(201))
            .expect("registering a user");
        let token = self.session(base, &email).await.expect("logging in");
        User { email, token }
    }

    /// `method base path` with `token`.
    async fn authorized(
        &self,
        method: Method,
        base: &str,
        path: &str,
        token: &str,
    ) -> Result<Reply, String> {
        let request = self.request(method, base, path, &client_address());
        self.send(request.bearer_auth(token)).await
    }

    /// `GET /api/v1/users/me` with `token`.
    pub async fn me(&self, base: &str, token: &str) -> Result<Reply, String> {
        self.authorized(Method::GET, base, "/api/v1/users/me", token)
            .await
    }

    /// `POST /api/v1/auth/logout` with `token`.
    pub async fn logout(&self, base: &str, token: &str) -> Result<Reply, String> {
        self.authorized(Method::POST, base, "/api/v1/auth/logout", token)
            .await
    }

    /// Creates a market named `name` as `user`; its id.
    pub async fn create(&self, base: &str, user: &User, name: &str) -> String {
        let body = json!({ "name": name, "description": "created", "volume": 1.5 });
        let request = self.request(Method::POST, base, "/api/v1/markets", &client_address());
        let created = self
            .send(request.bearer_auth(&user.token).json(&body))
            .await;
        let json = created
            .and_then(|reply| reply.want(201))
            .expect("creating a market");
        json["data"]["id"].as_str().expect("a market id").to_owned()
    }

    /// PATCHes market `id`'s description as `user`.
    pub async fn patch(&self, base: &str, user: &User, id: &str, description: &str) -> Reply {
        let path = format!("/api/v1/markets/{id}");
        let request = self.request(Method::PATCH, base, &path, &client_address());
        let body = json!({ "description": description });
        let patched = self
            .send(request.bearer_auth(&user.token).json(&body))
            .await;
        patched.expect("a PATCH answer")
    }

    /// `GET /api/v1/markets/{id}`.
    pub async fn market(&self, base: &str, id: &str) -> Result<Reply, String> {
        self.get(base, &format!("/api/v1/markets/{id}")).await
    }

    /// Succeeds once `base` serves market `id` from its cache.
    pub async fn hit(&self, base: &str, id: &str) -> Result<(), String> {
        let reply = self.market(base, id).await?;
        match (reply.status, reply.header("x-cache")) {
            (200, Some("HIT")) => Ok(()),
            (status, cache) => Err(format!("{base}: {status}, X-Cache {cache:?}")),
        }
    }

    /// Succeeds once every one of `bases` serves market `id` from its cache.
    pub async fn hits(&self, bases: &[String], id: &str) -> Result<(), String> {
        for base in bases {
            self.hit(base, id).await?;
        }
        Ok(())
    }

    /// `/health/ready` of `base`, answering 200 (`ok` or `degraded`).
    pub async fn ready(&self, base: &str) -> Result<Value, String> {
        self.get(base, "/health/ready").await?.want(200)
    }

    /// Sum of the counters `name` with `label` (e.g. `role="replica"`) in `base`'s `/metrics`.
    pub async fn counter(&self, base: &str, name: &str, label: &str) -> Result<f64, String> {
        let reply = self.get(base, "/metrics").await?;
        if reply.status != 200 {
            return Err(format!("{base}/metrics answered {}", reply.status));
        }
        let prefix = format!("{name}{{");
        Ok(reply
            .body
            .lines()
            .filter(|line| line.starts_with(&prefix) && line.contains(label))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}
