//! The fleet tests (issue 22): two instances behind nginx on a PostgreSQL primary with a
//! streaming replica and a Redis Cluster, as `scripts/fleet.sh up` brings them up on loopback.
//! They check what the instances share (rate limits, logouts, fresh reads after a write), that
//! reads go to the replica, and what a fault costs under load through nginx: an instance, a
//! Redis master and the replica stopped, each answered with no 5xx, and how long until the
//! fleet is whole again.
//!
//! The scenarios share the one fleet and the faults disturb it, so one test runs them all, in
//! a fixed order, and restores each fault with `scripts/fleet.sh up` before it checks the
//! outcome (the next scenario finds a whole fleet even after a failed one). It reads the fleet
//! from the variables `up` exports, and fails without them:
//!
//! ```text
//! eval "$(MARKETS_BIN=target/debug/markets FLEET_REPLICAS=1 scripts/fleet.sh up)"
//! cargo test -p markets-app --test fleet -- --nocapture
//! ```
//!
//! (`cargo test --workspace` leaves it out: `test = false`.) The table of the faults is printed
//! at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fleet/mod.rs"]
mod harness;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Instant;

use harness::api::{User, client_address};
use harness::load::Load;
use harness::redis::{self, KEY_PREFIX};
use harness::report::Report;
use harness::{Fleet, blocking, poll, port, seconds};

/// Requests the load must have sent in a phase of a fault: enough to have met the fault on
/// every client many times.
const PHASE: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet() {
    let fleet = Fleet::from_env();
    let mut report = Report::default();
    rate_limits_are_shared(&fleet).await;
    logout_is_refused_on_the_other_instance(&fleet).await;
    patch_is_read_fresh_on_the_other_instance(&fleet).await;
    instance_killed(&fleet, &mut report).await;
    redis_master_killed(&fleet, &mut report).await;
    reads_go_to_the_replica(&fleet).await;
    replica_stopped(&fleet, &mut report).await;
}

/// Logins through nginx, which sends them to the instances in turn, spend one budget: each
/// answer has one less remaining than the one before, whichever instance gave it (a budget per
/// instance would repeat each count). Another address in `X-Forwarded-For` starts a budget of
/// its own, so the header is what the instances key on.
async fn rate_limits_are_shared(fleet: &Fleet) {
    let user = fleet.api.user(&fleet.url).await;
    let address = client_address();
    let (mut upstreams, mut remaining, mut limit) = (BTreeSet::new(), Vec::new(), 0);
    for _ in 0..4 {
        let reply = fleet.api.login(&fleet.url, &user.email, &address).await;
        let reply = reply.expect("a login through nginx");
        assert_eq!(reply.status, 200, "{}", reply.body);
        upstreams.insert(reply.header("x-fleet-upstream").unwrap_or("?").to_owned());
        limit = reply.number("ratelimit-limit").expect("RateLimit-Limit");
        remaining.push(
            reply
                .number("ratelimit-remaining")
                .expect("RateLimit-Remaining"),
        );
    }
    assert!(
        upstreams.len() >= 2,
        "nginx sent every login to {upstreams:?}"
    );
    let spent: Vec<u64> = (1..=4).map(|count| limit - count).collect();
    assert_eq!(remaining, spent, "logins through {upstreams:?}");
    let other = fleet
        .api
        .login(&fleet.url, &user.email, &client_address())
        .await;
    let other = other.expect("a login from another address");
    assert_eq!(
        other.number("ratelimit-remaining"),
        Some(limit - 1),
        "another X-Forwarded-For address shares the first one's budget"
    );
}

/// A logout on one instance revokes the token on the other at once.
async fn logout_is_refused_on_the_other_instance(fleet: &Fleet) {
    let (first, second) = fleet.pair();
    let user = fleet.api.user(first).await;
    let me = fleet
        .api
        .me(second, &user.token)
        .await
        .and_then(|reply| reply.want(200));
    me.expect("the token on the other instance before the logout");
    let logout = fleet.api.logout(first, &user.token).await;
    logout.and_then(|reply| reply.want(204)).expect("a logout");
    refused_everywhere(fleet, &user.token)
        .await
        .expect("the revoked token");
}

/// Succeeds when every instance refuses `token` (401).
async fn refused_everywhere(fleet: &Fleet, token: &str) -> Result<(), String> {
    for base in &fleet.instances {
        fleet
            .api
            .me(base, token)
            .await?
            .want(401)
            .map_err(|got| format!("{base}: {got}"))?;
    }
    Ok(())
}

/// A PATCH on one instance, then a GET on the other that held the market in its cache: the new
/// version, never the cached copy. Both ways round.
async fn patch_is_read_fresh_on_the_other_instance(fleet: &Fleet) {
    let (first, second) = fleet.pair();
    let user = fleet.api.user(first).await;
    let id = fleet.api.create(first, &user, "fleet patched").await;
    for (round, (writer, reader)) in [(first, second), (second, first)].into_iter().enumerate() {
        let cached = poll("the market cached", || fleet.api.hit(reader, &id)).await;
        cached.expect("the copy a stale read would show");
        let description = format!("version {round}");
        let patch = fleet.api.patch(writer, &user, &id, &description).await;
        patch.want(200).expect("a PATCH");
        let read = fleet
            .api
            .market(reader, &id)
            .await
            .and_then(|reply| reply.want(200));
        let read = read.expect("a GET right after the PATCH");
        assert_eq!(
            read["data"]["description"], description,
            "{reader} after a PATCH on {writer}"
        );
    }
}

/// A few markets to read, created through nginx: their ids.
async fn seed(fleet: &Fleet, label: &str) -> Vec<String> {
    let user = fleet.api.user(&fleet.url).await;
    let mut ids = Vec::new();
    for number in 0..8 {
        let name = format!("fleet {label} {number}");
        ids.push(fleet.api.create(&fleet.url, &user, &name).await);
    }
    ids
}

/// The end of every fault scenario: restores the fleet with `up`, then runs `after` (the checks
/// of the recovery), stops the load and adds the row of `fault`, then asserts: `during` (the
/// fault's own checks), the restore, `after`, and no failed request.
async fn conclude(
    fleet: &Fleet,
    report: &mut Report,
    fault: &str,
    load: Load,
    during: Result<String, String>,
    after: impl Future<Output = Result<String, String>>,
) {
    let restored = fleet.restore().await;
    let after = match &restored {
        Ok(_) => after.await,
        Err(_) => Err("not checked: the restore failed".to_owned()),
    };
    let tally = load.stop().await;
    let recovery = match (&during, &restored, &after) {
        (Ok(during), Ok(took), Ok(after)) => {
            let up = format!("`up` {}", seconds(*took));
            let parts = [during.as_str(), up.as_str(), after.as_str()];
            let parts: Vec<&str> = parts.into_iter().filter(|part| !part.is_empty()).collect();
            parts.join("; ")
        }
        _ => "failed".to_owned(),
    };
    report.row(fault, &tally, recovery);
    during.expect("during the fault");
    restored.expect("the restore");
    after.expect("after the restore");
    assert_eq!(tally.failures, 0, "failed requests: {:?}", tally.examples);
}

/// Succeeds when every instance answers `/health/ready` with 200.
async fn all_ready(fleet: &Fleet) -> Result<(), String> {
    for base in &fleet.instances {
        fleet
            .api
            .ready(base)
            .await
            .map_err(|got| format!("{base}: {got}"))?;
    }
    Ok(())
}

/// One instance SIGKILLed under GETs through nginx: nginx sends the requests the dead instance
/// held or refuses to the other (GETs are idempotent), so every one is answered. `up` restarts
/// it; recovery is until both instances are ready.
async fn instance_killed(fleet: &Fleet, report: &mut Report) {
    let ids = seed(fleet, "instance").await;
    let victim = &fleet.instances[0];
    let name = format!("serve-{}", port(victim));
    let load = Load::start(&fleet.api, &fleet.url, &ids, None);
    let during = async {
        load.more(PHASE).await?;
        fleet.signal(&name, "KILL")?;
        let dead = || async {
            match fleet.api.get(victim, "/health/live").await {
                Err(_) => Ok(()),
                Ok(reply) => Err(format!("it answers {}", reply.status)),
            }
        };
        poll(&format!("{victim} refusing connections"), dead).await?;
        load.more(PHASE).await.map(|()| String::new())
    }
    .await;
    let after = async {
        let started = Instant::now();
        poll("every instance ready", || all_ready(fleet)).await?;
        Ok(format!("both ready {} later", seconds(started.elapsed())))
    };
    let fault = format!("instance {name} SIGKILL");
    conclude(fleet, report, &fault, load, during, after).await;
}

/// The `jti` claim of a token, which names its revocation.
fn token_id(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims = URL_SAFE_NO_PAD.decode(payload).expect("base64url claims");
    let claims: Value = serde_json::from_slice(&claims).expect("JSON claims");
    claims["jti"].as_str().expect("a jti claim").to_owned()
}

/// A market of `user` whose cache key lives on the Redis node `victim` (creating markets until
/// one does: a third of them do).
async fn market_on(fleet: &Fleet, user: &User, victim: &str) -> String {
    for number in 0..30 {
        let id = fleet
            .api
            .create(&fleet.url, user, &format!("fleet redis {number}"))
            .await;
        let key = format!("{KEY_PREFIX}market:{id}");
        if blocking(|| redis::owner(&fleet.redis_nodes, &key)).as_deref() == Some(victim) {
            return id;
        }
    }
    panic!("none of 30 markets has its cache key on {victim}");
}

/// Succeeds once another node serves `key`, whose master `victim` died, and every node but the
/// victim says `cluster_state:ok`.
fn failed_over(fleet: &Fleet, victim: &str, key: &str) -> Result<(), String> {
    let survivors: Vec<&String> = fleet
        .redis_nodes
        .iter()
        .filter(|node| *node != victim)
        .collect();
    match redis::owner(&fleet.redis_nodes, key) {
        Some(node) if node != victim => redis::cluster_ok(&survivors),
        owner => Err(format!("{key} served by {owner:?}")),
    }
}

/// What the Redis scenario kills and checks.
struct Target {
    user: User,
    /// A session, logged out while its revocation's master is down.
    session: String,
    /// Its revocation's key.
    revocation: String,
    /// The master of that key, `host:port`.
    victim: String,
    /// A market cached on every instance, whose key lives on the victim too.
    market: String,
}

/// A session, the master of its revocation, and a market cached on that master.
async fn target(fleet: &Fleet) -> Target {
    let user = fleet.api.user(&fleet.url).await;
    let session = fleet
        .api
        .session(&fleet.url, &user.email)
        .await
        .expect("a session");
    let revocation = format!("{KEY_PREFIX}revoked:{}", token_id(&session));
    let victim = blocking(|| redis::owner(&fleet.redis_nodes, &revocation));
    let victim = victim.unwrap_or_else(|| panic!("no Redis node serves {revocation}"));
    let market = market_on(fleet, &user, &victim).await;
    let cached = poll("the market cached", || {
        fleet.api.hits(&fleet.instances, &market)
    })
    .await;
    cached.expect("the market in every instance's cache");
    Target {
        user,
        session,
        revocation,
        victim,
        market,
    }
}

/// One Redis master SIGKILLed under GETs, lists and logins through nginx: the master of the
/// revocation of a session logged out while it is down, and of a cached market. Its replica
/// takes over after the node timeout (2 s); meanwhile nothing fails; afterwards the session is
/// refused on both instances (the revocation was not lost) and the market is served from the
/// cache again. `up` restarts the old master, which rejoins as a replica.
async fn redis_master_killed(fleet: &Fleet, report: &mut Report) {
    assert_eq!(
        fleet.redis_nodes.len(),
        6,
        "the Redis Cluster (FLEET_SINGLE_REDIS unset)"
    );
    let Target {
        user,
        session,
        revocation,
        victim,
        market,
    } = target(fleet).await;
    let name = format!("redis-{}", port(&victim));
    let load = Load::start(
        &fleet.api,
        &fleet.url,
        std::slice::from_ref(&market),
        Some(&user.email),
    );
    let during = async {
        load.more(PHASE).await?;
        fleet.signal(&name, "KILL")?;
        let killed = Instant::now();
        let logout = fleet
            .api
            .logout(&fleet.instances[0], &session)
            .await?
            .want(204);
        logout.map_err(|got| format!("the logout while {victim} is down: {got}"))?;
        let logged_out = killed.elapsed();
        let over = || async { blocking(|| failed_over(fleet, &victim, &revocation)) };
        poll("the failover", over).await?;
        let failover = killed.elapsed();
        poll("cache hits", || fleet.api.hits(&fleet.instances, &market)).await?;
        let hits = killed.elapsed();
        refused_everywhere(fleet, &session).await?;
        Ok(format!(
            "failover {}, cache hits {} after the kill (logout at {})",
            seconds(failover),
            seconds(hits),
            seconds(logged_out)
        ))
    }
    .await;
    let after = async {
        let role = blocking(|| redis::role(&victim))?;
        if role != "slave" {
            return Err(format!("{victim} is a {role} after the restore"));
        }
        refused_everywhere(fleet, &session).await?;
        Ok("rejoined as a replica".to_owned())
    };
    let fault = format!("Redis master {name} SIGKILL");
    conclude(fleet, report, &fault, load, during, after).await;
}

/// Succeeds when every instance's readiness names the replica `state` (`up`, `down`).
async fn replica_everywhere(fleet: &Fleet, state: &str) -> Result<(), String> {
    for base in &fleet.instances {
        let readiness = fleet.api.ready(base).await?;
        let replicas = &readiness["checks"]["replicas"];
        if replicas[&fleet.replica] != state {
            return Err(format!(
                "{base}: {readiness} (with FLEET_REPLICAS=1 it names {} in checks.replicas)",
                fleet.replica
            ));
        }
    }
    Ok(())
}

/// `db_queries_total{role}` of `base`.
async fn queries(fleet: &Fleet, base: &str, role: &str) -> Result<f64, String> {
    let label = format!("role=\"{role}\"");
    fleet.api.counter(base, "db_queries_total", &label).await
}

/// Lists and searches on each instance until its replica queries grow: its reads are served by
/// the replica.
async fn replica_reads_grow(fleet: &Fleet) -> Result<(), String> {
    for base in &fleet.instances {
        let before = queries(fleet, base, "replica").await?;
        poll(&format!("replica reads on {base}"), || async {
            for path in [
                "/api/v1/markets?page=1",
                "/api/v1/markets/search?query=fleet",
            ] {
                fleet.api.get(base, path).await?.want(200)?;
            }
            let now = queries(fleet, base, "replica").await?;
            (now > before)
                .then_some(())
                .ok_or_else(|| format!("{now} replica queries"))
        })
        .await?;
    }
    Ok(())
}

/// Reads go to the replica, writes to the primary: the instances' `db_queries_total` by role,
/// and readiness names the replica `up`.
async fn reads_go_to_the_replica(fleet: &Fleet) {
    let up = poll("the replica up", || replica_everywhere(fleet, "up")).await;
    up.expect("the replica in readiness");
    replica_reads_grow(fleet)
        .await
        .expect("reads on the replica");
    let user = fleet.api.user(&fleet.url).await;
    for base in &fleet.instances {
        let before = queries(fleet, base, "primary")
            .await
            .expect("primary queries");
        fleet.api.create(base, &user, "fleet written").await;
        let after = queries(fleet, base, "primary")
            .await
            .expect("primary queries");
        assert!(
            after > before,
            "a create on {base} left primary queries at {after}"
        );
    }
}

/// The replica stopped (a fast shutdown: SIGTERM, PostgreSQL's smart one, would wait for the
/// instances' sessions to end) under GETs through nginx: readiness names it down, its reads go
/// to the primary, nothing fails. `up` starts it again; recovery is until readiness names it up
/// and reads grow on it again.
async fn replica_stopped(fleet: &Fleet, report: &mut Report) {
    let ids = seed(fleet, "replica").await;
    let load = Load::start(&fleet.api, &fleet.url, &ids, None);
    let during = async {
        load.more(PHASE).await?;
        fleet.signal("pg-replica", "INT")?;
        let stopped = Instant::now();
        poll("the replica down", || replica_everywhere(fleet, "down")).await?;
        let noticed = stopped.elapsed();
        load.more(PHASE).await?;
        Ok(format!("seen down in {}", seconds(noticed)))
    }
    .await;
    let after = async {
        let started = Instant::now();
        poll("the replica up", || replica_everywhere(fleet, "up")).await?;
        replica_reads_grow(fleet).await?;
        Ok(format!("reads on it {} later", seconds(started.elapsed())))
    };
    conclude(
        fleet,
        report,
        "PostgreSQL replica stopped",
        load,
        during,
        after,
    )
    .await;
}
