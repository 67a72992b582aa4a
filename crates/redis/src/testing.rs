//! Redis for tests: the shared server (`REDIS_URL`, else 127.0.0.1:6379) with a key prefix of
//! one's own, a private `redis-server` that a test may stop and restart, or a private Redis
//! Cluster whose nodes a test may kill.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
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
        let mut redis = Self {
            port: free_ports(1)[0],
            child: None,
        };
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

/// A Redis Cluster of one's own: six `redis-server`s (three masters with one replica each) on
/// free loopback ports, for the suites on a cluster and for tests that kill a master. Every
/// node runs under a small shell that waits on a pipe from this process: the nodes are killed
/// (by PID) when this is dropped, and also when the test process ends without dropping it
/// (a [`shared`](Self::shared) cluster, a crash), since the pipe then closes.
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
}

#[derive(Debug)]
struct ClusterNode {
    port: u16,
    /// The redis-server's PID; `None` once killed.
    pid: Option<String>,
    /// The shell that kills the node when its stdin closes.
    watchdog: Child,
}

/// How long a node may go unheard before the others fail it over.
const NODE_TIMEOUT_MS: u64 = 2_000;

impl PrivateCluster {
    /// Starts the six nodes, joins them with `redis-cli --cluster create` and waits until every
    /// node sees the cluster healthy with each replica in sync.
    ///
    /// # Panics
    /// If `redis-server` or `redis-cli` cannot be started (run `scripts/services.sh up`, which
    /// installs them), or the cluster does not form within 60 s.
    pub fn start() -> Self {
        for (program, package) in [
            ("redis-server", "redis-server"),
            ("redis-cli", "redis-tools"),
        ] {
            let found = Command::new(program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|output| output.status.success());
            assert!(
                found,
                "{program} is missing: run scripts/services.sh up, which installs Debian's {package}"
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "markets-test-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        // A client port and a cluster bus port per node.
        let ports = free_ports(12);
        let mut cluster = Self {
            nodes: (0..6)
                .map(|n| ClusterNode::start(&dir, ports[n], ports[n + 6]))
                .collect(),
            dir,
        };
        for node in &cluster.nodes {
            cluster.wait_until(
                Duration::from_secs(20),
                || cli(node.port, &["PING"]).trim() == "PONG",
                || format!("node {} does not answer PING", node.port),
            );
        }
        let seeds: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&seeds)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run redis-cli (scripts/services.sh up installs it): {error}")
            });
        if !created.status.success() {
            let output = String::from_utf8_lossy(&created.stdout).into_owned();
            cluster.nodes.iter_mut().for_each(ClusterNode::kill);
            panic!("redis-cli --cluster create failed: {output}");
        }
        cluster.wait_healthy(Duration::from_secs(60));
        cluster
    }

    /// One cluster for the whole test process, started on first use and killed when the
    /// process ends.
    pub fn shared() -> &'static Self {
        static SHARED: std::sync::OnceLock<PrivateCluster> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// `redis-cluster://` with every node that runs as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.pid.is_some())
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis-cluster://{}", seeds.join(","))
    }

    /// Settings for this cluster, with a unique key prefix.
    pub fn settings(&self) -> RedisSettings {
        settings(self.url())
    }

    /// The ports of the nodes that are masters serving slots now, as the live nodes see it.
    pub fn masters(&self) -> Vec<u16> {
        let mut masters: Vec<u16> = self
            .nodes_view()
            .into_iter()
            .filter(|node| node.master && !node.failed && node.serves_slots)
            .map(|node| node.port)
            .collect();
        masters.sort_unstable();
        masters.dedup();
        masters
    }

    /// Kills node `port` with SIGKILL, as a crash would; the others fail it over after about
    /// twice the node timeout (2 s).
    ///
    /// # Panics
    /// If no node of this cluster has that port.
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
            .kill();
    }

    /// Waits until every live node reports `cluster_state:ok`, every slot is served by a live
    /// master, and every live replica is in sync with its master.
    ///
    /// # Panics
    /// If that takes longer than `timeout`.
    pub fn wait_healthy(&self, timeout: Duration) {
        self.wait_until(
            timeout,
            || self.healthy(),
            || {
                let nodes: String = self
                    .live()
                    .map(|port| cli(port, &["CLUSTER", "NODES"]))
                    .collect();
                format!("the cluster is not healthy: {nodes}")
            },
        );
    }

    /// Waits until every live master's replicas have received all it has written (what a
    /// failover would otherwise lose: replication is asynchronous).
    ///
    /// # Panics
    /// If that takes longer than `timeout`.
    pub fn wait_replicated(&self, timeout: Duration) {
        self.wait_until(
            timeout,
            || self.masters().into_iter().all(replicas_caught_up),
            || "the replicas have not caught up".to_owned(),
        );
    }

    /// `redis-cli` against node `port`, for assertions on its state.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    fn live(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|node| node.pid.is_some())
            .map(|node| node.port)
    }

    fn healthy(&self) -> bool {
        let live: Vec<u16> = self.live().collect();
        let states_ok = live.iter().all(|&port| {
            cli(port, &["CLUSTER", "INFO"])
                .lines()
                .any(|line| line.trim() == "cluster_state:ok")
        });
        if !states_ok {
            return false;
        }
        let view = self.nodes_view();
        let masters = view
            .iter()
            .filter(|node| node.master && node.serves_slots && !node.failed)
            .filter(|node| live.contains(&node.port))
            .count();
        let replicas_in_sync = live.iter().all(|&port| {
            let info = cli(port, &["INFO", "replication"]);
            !info.contains("role:slave") || info.contains("master_link_status:up")
        });
        masters == 3 && replicas_in_sync
    }

    /// `CLUSTER NODES` as the first live node sees it.
    fn nodes_view(&self) -> Vec<NodeView> {
        let Some(port) = self.live().next() else {
            return Vec::new();
        };
        cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(NodeView::parse)
            .collect()
    }

    /// Polls `ready` every 50 ms until it holds.
    ///
    /// # Panics
    /// After `timeout`, with what `failure` says and where the nodes' logs are.
    fn wait_until(
        &self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
        failure: impl FnOnce() -> String,
    ) {
        let deadline = std::time::Instant::now() + timeout;
        while !ready() {
            if std::time::Instant::now() >= deadline {
                panic!(
                    "{} after {timeout:?} (logs in {})",
                    failure(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.nodes.iter_mut().for_each(ClusterNode::kill);
        for node in &mut self.nodes {
            drop(node.watchdog.stdin.take());
            let _ = node.watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of `CLUSTER NODES`.
struct NodeView {
    port: u16,
    master: bool,
    failed: bool,
    serves_slots: bool,
}

impl NodeView {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?;
        let port = address
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        let flags = fields.get(2)?;
        Some(Self {
            port,
            master: flags.split(',').any(|flag| flag == "master"),
            failed: flags
                .split(',')
                .any(|flag| flag == "fail" || flag == "fail?"),
            serves_slots: fields.len() > 8,
        })
    }
}

impl ClusterNode {
    /// Starts a cluster-enabled `redis-server` on `port` (bus on `bus_port`) under a shell that
    /// kills it, by PID, when its stdin closes.
    fn start(dir: &Path, port: u16, bus_port: u16) -> Self {
        let node_dir = dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", node_dir.display()));
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(concat!(
                r#"redis-server "$@" >/dev/null 2>&1 </dev/null & echo "$!"; read -r _; "#,
                r#"kill -9 "$!" 2>/dev/null; rm -rf -- "$NODE_DIR"; rmdir -- "${NODE_DIR%/*}" 2>/dev/null; exit 0"#
            ))
            .arg("sh")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-port", &bus_port.to_string()])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&node_dir)
            .arg("--logfile")
            .arg(node_dir.join("redis.log"))
            .env("NODE_DIR", &node_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start sh for redis-server: {error}"));
        let stdout = watchdog
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout"));
        let mut pid = String::new();
        BufReader::new(stdout)
            .read_line(&mut pid)
            .unwrap_or_else(|error| panic!("no PID for redis-server on port {port}: {error}"));
        let pid = pid.trim().to_owned();
        assert!(
            !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()),
            "no PID for redis-server on port {port}: {pid:?} (is redis-server installed? scripts/services.sh up)"
        );
        Self {
            port,
            pid: Some(pid),
            watchdog,
        }
    }

    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
}

/// Whether every replica of master `port` has its replication offset.
fn replicas_caught_up(port: u16) -> bool {
    let info = cli(port, &["INFO", "replication"]);
    let field = |line: &str, name: &str| {
        line.split([',', ':'])
            .find_map(|part| part.strip_prefix(name))
            .map(|value| value.trim().to_owned())
    };
    let Some(offset) = info
        .lines()
        .find_map(|line| line.strip_prefix("master_repl_offset:"))
        .map(|offset| offset.trim().to_owned())
    else {
        return false;
    };
    let replicas: Vec<Option<String>> = info
        .lines()
        .filter(|line| line.starts_with("slave") && line.contains("offset="))
        .map(|line| field(line, "offset="))
        .collect();
    !replicas.is_empty()
        && replicas
            .iter()
            .all(|replica| replica.as_deref() == Some(offset.as_str()))
}

/// `count` distinct free loopback ports: each held open until all are chosen.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("no free port: {error}"))
        })
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .unwrap_or_else(|error| panic!("no free port: {error}"))
                .port()
        })
        .collect()
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run redis-cli: {error}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}
