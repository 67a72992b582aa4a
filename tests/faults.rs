//! Dependency faults under load (issue 16): Redis killed, frozen, restarted with old data and
//! partitioned from one instance; PostgreSQL restarted and stopped. Each scenario owns private
//! PostgreSQL and Redis processes on their own loopback ports (never the shared ones), runs two
//! instances of the binary on them, and checks every response: no 5xx but 503, every 503 with
//! `Retry-After` in the error envelope, no read older than a write that answered before it
//! started, no market lost or stored twice, readiness telling the truth at each step. Each
//! prints a table of what it measured and appends it to `target/faults-report.md`.
//!
//! The scenarios are independent (each its own processes, database and markets) but run one
//! at a time, since they measure recovery times on a small machine. The binaries come from
//! `scripts/services.sh up`: PostgreSQL 18 with pgvector under `/var/tmp/markets-services`,
//! Debian's `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "faults/mod.rs"]
mod harness;

use harness::http::Readiness;
use harness::instance::KEY_PREFIX;
use harness::redis::Restart;
use harness::{DEADLINE, Route, World};
use std::time::{Duration, Instant};

/// How long a fault lasts where the scenario chooses: a stall, a partition, an outage.
const FAULT: Duration = Duration::from_secs(2);
/// How long the old value is looked for after a fault: reads on every instance, back to back.
const CHECK: Duration = Duration::from_secs(2);

/// Lets the load run until `until`: a phase of fixed length, not a wait for something.
async fn phase_until(until: Instant) {
    tokio::time::sleep_until(until.into()).await;
}

/// Lets the load run for `length`.
async fn phase(length: Duration) {
    phase_until(Instant::now() + length).await;
}

/// A blocking control command (`pg_ctl`, `psql`), run without stalling the load's tasks.
fn blocking<T>(command: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(command)
}

fn degraded(readiness: &Readiness) -> bool {
    readiness.code == 200 && readiness.status == "degraded" && readiness.cache == "down"
}

fn ok(readiness: &Readiness) -> bool {
    readiness.code == 200 && readiness.status == "ok"
}

/// PATCHes `targets[0]` through instance `through[0]` and DELETEs `targets[1]` through
/// `through[1]`; reports how long each took, and a problem unless they answered 200 and 204.
async fn write_targets(world: &mut World, targets: &[String], through: [usize; 2], when: &str) {
    let patch = world.http.patch(world.base(through[0]), &targets[0]).await;
    let delete = world.http.delete(world.base(through[1]), &targets[1]).await;
    let writes = [
        ("PATCH", through[0], patch, 200),
        ("DELETE", through[1], delete, 204),
    ];
    for (method, index, answer, status) in writes {
        let what = format!("{method} through instance {index} {when}");
        match answer {
            Some(answer) if answer.status == status => {
                let took = answer.answered.duration_since(answer.started);
                let took = format!("{status} in {} ms", took.as_millis());
                world.report.row(&what, took);
            }
            Some(answer) => {
                world.report.row(&what, answer.status);
                let problem = format!("{what} answered {}: {}", answer.status, answer.json);
                world.report.problem(problem);
            }
            None => world.report.problem(format!("{what} got no answer")),
        }
    }
}

/// After the fault that ended at `since` (`after` names its end): reads both targets on every
/// instance for [`CHECK`] while measuring how long until every instance serves the patched one
/// from the cache, fresh.
async fn check_targets(world: &mut World, targets: &[String], since: Instant, after: &str) {
    let (checked, hit) = tokio::join!(
        world.read_for(targets, CHECK),
        world.hits_everywhere(&targets[0], since),
    );
    let report = &mut world.report;
    report.row(
        &format!("reads of both markets on every instance after {after}"),
        checked,
    );
    let hits = format!("fresh cache hits of the patched market on every instance after {after}");
    report.measured(&hits, hit);
}

/// Measures, from now, how long until every instance's readiness is `state` and every
/// instance serves `id` from the cache again, after the end of the fault `after`.
async fn recovered(
    world: &mut World,
    state: &str,
    wanted: impl Fn(&Readiness) -> bool,
    after: &str,
    id: &str,
) {
    let since = Instant::now();
    let (ready, hit) = tokio::join!(
        world.all_ready_until(DEADLINE, wanted),
        world.hits_everywhere(id, since),
    );
    let report = &mut world.report;
    report.measured(&format!("readiness {state} after {after}"), ready);
    report.measured(&format!("cache hits on every instance after {after}"), hit);
}

/// A world with markets to read, among them the two `targets` a scenario writes, cached on
/// every instance: the old values a stale read would show.
async fn with_cached_targets(title: &str, route: Route) -> (World, Vec<String>, Vec<String>) {
    let mut world = World::start(title, route).await;
    let targets = world.seed("target", 2).await;
    world.cache_everywhere(&targets).await;
    let reads = [world.seed("read", 30).await, targets.clone()].concat();
    (world, reads, targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_then_restarted_empty() {
    let mut world = World::start("Redis SIGKILL under load, restarted empty", Route::Direct).await;
    let reads = world.seed("read", 40).await;
    let writes = world.seed("written", 8).await;
    let load = world.load(&reads, &writes);
    phase(FAULT).await;

    world.redis.kill();
    let killed = Instant::now();
    let down = world.all_ready_until(DEADLINE, degraded).await;
    world
        .report
        .measured("readiness degraded (cache down) after the kill", down);
    phase_until(killed + FAULT).await;
    world.redis.restart(Restart::Empty).await;
    recovered(&mut world, "ok", ok, "the restart", &reads[0]).await;
    phase(FAULT).await;
    load.stop().await;
    world.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_while_a_market_is_patched_and_another_deleted() {
    let title = "Redis SIGSTOP during a PATCH and a DELETE, then SIGCONT";
    let (mut world, reads, targets) = with_cached_targets(title, Route::Direct).await;
    let load = world.load(&reads, &[]);
    phase(Duration::from_secs(1)).await;

    world.redis.freeze();
    let frozen = Instant::now();
    // Both instances have seen Redis fail (so the writes meet the worst case: the cache skipped
    // after a failure) before the writes are sent.
    let noticed = world.all_ready_until(DEADLINE, degraded).await;
    world
        .report
        .measured("readiness degraded (cache down) after SIGSTOP", noticed);
    write_targets(&mut world, &targets, [0, 1], "while frozen").await;
    phase_until(frozen + FAULT).await;
    world.redis.thaw();
    let thawed = Instant::now();

    check_targets(&mut world, &targets, thawed, "SIGCONT").await;
    let ready = world.all_ready_until(DEADLINE, ok).await;
    world
        .report
        .measured("readiness ok after SIGCONT (after the checks)", ready);
    load.stop().await;
    world.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_data_older_than_a_patch_and_a_delete() {
    let title = "Redis restarted with old data (SIGKILL, then its last snapshot)";
    let (mut world, reads, targets) = with_cached_targets(title, Route::Direct).await;
    let load = world.load(&reads, &[]);
    phase(Duration::from_secs(1)).await;
    // Quiet while the snapshot is taken and restored, so that what Redis holds after the
    // restart is known: the revision before the writes.
    load.stop().await;

    world.redis.snapshot().await;
    write_targets(&mut world, &targets, [0, 1], "after the snapshot").await;
    world.redis.kill();
    world.redis.restart(Restart::WithData).await;
    let restarted = Instant::now();
    for id in &targets {
        let held = world
            .redis
            .command(&["GET", &format!("{KEY_PREFIX}market:{id}")])
            .await;
        let old = held.as_deref().is_ok_and(|entry| entry.contains("rev 0"));
        world.report.require(old, || {
            format!("the restarted Redis does not hold rev 0 of {id}: {held:?}")
        });
    }
    world
        .report
        .row("Redis after the restart", "holds rev 0 of both markets");

    let load = world.load(&reads, &[]);
    check_targets(&mut world, &targets, restarted, "the restart").await;
    // An instance started now remembers nothing of the writes: it must not believe Redis either.
    let redis_url = world.redis.url();
    world.start_instance(&redis_url).await;
    let checked = world.read_for(&targets, CHECK).await;
    world.report.row(
        "reads on the three instances after starting a third",
        checked,
    );
    load.stop().await;
    world.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_partitioned_from_one_instance() {
    let title = "Redis partitioned from instance 0 only (a proxy stops moving bytes)";
    let (mut world, reads, targets) = with_cached_targets(title, Route::ThroughProxy).await;
    let load = world.load(&reads, &[]);
    phase(Duration::from_secs(1)).await;

    let proxy = world.proxy.as_ref().unwrap();
    proxy.partition();
    let noticed = world.readiness_until(0, DEADLINE, degraded).await;
    world.report.measured(
        "instance 0 readiness degraded (cache down) after the partition",
        noticed,
    );
    let other = world.readiness_until(1, DEADLINE, ok).await;
    world
        .report
        .measured("instance 1 readiness ok during the partition", other);
    let during = "during the partition";
    write_targets(&mut world, &targets, [0, 0], during).await;
    let checked = world.read_for(&targets, CHECK).await;
    world.report.row(
        "reads of the two markets on both instances during the partition",
        checked,
    );

    world.proxy.as_ref().unwrap().heal();
    let healed = Instant::now();
    let ready = world.readiness_until(0, DEADLINE, ok).await;
    world
        .report
        .measured("instance 0 readiness ok after healing", ready);
    check_targets(&mut world, &targets, healed, "healing").await;
    load.stop().await;
    world.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_and_stopped_under_load() {
    let title = "PostgreSQL fast restart, then a 5 s stop, under load";
    let mut world = World::start(title, Route::Direct).await;
    let reads = world.seed("read", 40).await;
    let writes = world.seed("written", 8).await;
    let load = world.load(&reads, &writes);
    phase(FAULT).await;

    blocking(|| world.postgres.restart_fast());
    let database_up = |readiness: &Readiness| readiness.code == 200 && readiness.database == "up";
    let back = world.all_ready_until(DEADLINE, database_up).await;
    world.report.measured(
        "readiness with the database up after `pg_ctl restart -m fast`",
        back,
    );
    phase(FAULT).await;

    blocking(|| world.postgres.stop_fast());
    let stopped = Instant::now();
    let unavailable = |readiness: &Readiness| {
        readiness.code == 503
            && readiness.status == "unavailable"
            && readiness.database == "down"
            && readiness.retry_after
    };
    let down = world.all_ready_until(DEADLINE, unavailable).await;
    world.report.measured(
        "readiness 503 naming the database after `pg_ctl stop -m fast`",
        down,
    );
    phase_until(stopped + Duration::from_secs(5)).await;
    blocking(|| world.postgres.start_again());
    let (after, id) = ("`pg_ctl start`", &reads[0]);
    recovered(&mut world, "with the database up", database_up, after, id).await;
    phase(FAULT).await;
    load.stop().await;

    let ready = world.all_ready_until(DEADLINE, ok).await;
    world
        .report
        .measured("readiness ok once the load stopped", ready);
    let drained = harness::process::poll(Duration::from_secs(30), || async {
        let sql = "SELECT count(*) FILTER (WHERE state <> 'dead') FROM jobs";
        (blocking(|| world.postgres.query(sql)) == "0").then_some(())
    })
    .await;
    let drained = drained.map(|(took, ())| took).ok_or_else(|| {
        blocking(|| {
            world
                .postgres
                .query("SELECT state, count(*) FROM jobs GROUP BY state")
        })
    });
    world.report.measured(
        "jobs drained (none queued or running) after the load stopped",
        drained,
    );
    let dead = blocking(|| {
        world
            .postgres
            .query("SELECT count(*) FROM jobs WHERE state = 'dead'")
    });
    world.report.row("dead jobs", dead);
    world.finish();
}
