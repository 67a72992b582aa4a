//! The fleet's Redis Cluster, through `redis-cli`: which node serves a key, and whether the
//! cluster says it is whole.

use std::process::Command;

use super::run;

/// The prefix of every key the instances write (`redis.key_prefix`'s default, which
/// `scripts/fleet.sh` leaves).
pub const KEY_PREFIX: &str = "markets:v1:";

/// `redis-cli ARGS...` on `node` (`host:port`): its answer.
pub fn cli(node: &str, args: &[&str]) -> Result<String, String> {
    let (host, port) = node
        .split_once(':')
        .ok_or_else(|| format!("no host:port: {node}"))?;
    run(Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args))
}

/// The node that serves `key`: the master of its slot answers a command on it, every other
/// node redirects (`MOVED`). None while no live node does: its master is down and no replica
/// has taken over yet.
pub fn owner(nodes: &[String], key: &str) -> Option<String> {
    nodes
        .iter()
        .find(|node| cli(node, &["exists", key]).is_ok_and(|answer| answer.parse::<u8>().is_ok()))
        .cloned()
}

/// Succeeds when every one of `nodes` says `cluster_state:ok`.
pub fn cluster_ok(nodes: &[&String]) -> Result<(), String> {
    for node in nodes {
        let info = cli(node, &["cluster", "info"])?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            let state = info.lines().find(|line| line.starts_with("cluster_state"));
            return Err(format!("{node}: {}", state.unwrap_or("no cluster_state")));
        }
    }
    Ok(())
}

/// `master` or `slave`: the first line of `ROLE`.
pub fn role(node: &str) -> Result<String, String> {
    let answer = cli(node, &["role"])?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}
