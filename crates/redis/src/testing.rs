//! Redis for tests: the shared server (`REDIS_URL`, else 127.0.0.1:6379) with a key prefix of
//! one's own, or a private `redis-server` that a test may stop and restart.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::RedisSettings;

/// Settings for the shared test Redis, isolated by a unique key prefix.
pub fn shared_settings() -> RedisSettings {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    settings(url)
}

fn settings(url: String) -> RedisSettings {
    RedisSettings {
        url,
        key_prefix: format!("markets:test:{}:", uuid::Uuid::new_v4().simple()),
        ttl: Duration::from_secs(300),
        command_timeout: Duration::from_millis(200),
    }
}

/// A `redis-server` of one's own on a free port, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// If `redis-server` cannot be started (run `scripts/services.sh up`, which installs it).
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap_or_else(|error| panic!("no free port: {error}"));
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    /// Settings for this server, with a unique key prefix.
    pub fn settings(&self) -> RedisSettings {
        settings(format!("redis://127.0.0.1:{}", self.port))
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port; returns once it accepts connections.
    ///
    /// # Panics
    /// If it does not start.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start redis-server: {error}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server on port {} did not start", self.port);
        self.child = Some(child);
    }

    /// `redis-cli` against this server, for assertions on its state.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run redis-cli: {error}"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
