//! The fault harness: a [`World`] of private PostgreSQL and Redis processes with two instances
//! of the binary on them, the load, and the checks a scenario reports on.

pub mod http;
pub mod instance;
pub mod load;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod report;
pub mod tracker;

use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

use http::{Answer, Http, Readiness};
use instance::{ADMIN_EMAIL, ADMIN_PASSWORD, Instance};
use load::{Load, TOPICS};
use markets_postgres::testing::PrivatePostgres;
use process::poll;
use proxy::Proxy;
use redis::PrivateRedis;
use report::Report;

/// The deadline of anything that must happen (a recovery, a readiness change, a fresh hit):
/// far above what it takes, so that reaching it means it did not happen.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Scenarios run one at a time: each measures recovery times on a 2-core machine, and two at
/// once would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How the first instance reaches Redis (the second always reaches it directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Directly.
    Direct,
    /// Through a [`Proxy`] the scenario can partition.
    ThroughProxy,
}

/// A scenario's processes, client and report. Fields drop in order: the instances first, the
/// folder (logs kept if the scenario failed) last.
#[derive(Debug)]
pub struct World {
    /// The instances; 0 and 1 are started with the world.
    pub instances: Vec<Instance>,
    /// Between instance 0 and Redis, with [`Route::ThroughProxy`].
    pub proxy: Option<Proxy>,
    pub redis: PrivateRedis,
    pub postgres: PrivatePostgres,
    /// Counts and checks every request.
    pub http: Http,
    pub report: Report,
    /// Loads started so far (each names its creates apart).
    loads: usize,
    folder: Folder,
    _alone: MutexGuard<'static, ()>,
}

impl World {
    /// Starts PostgreSQL, Redis (and the proxy), migrates, creates the administrator, and starts
    /// two instances, waiting until both are ready.
    pub async fn start(title: &str, route: Route) -> Self {
        let alone = ONE_AT_A_TIME.lock().await;
        let folder = Folder::new(title);
        let postgres = PrivatePostgres::start(&folder.0.join("postgres"));
        let redis = PrivateRedis::start(&folder.0.join("redis")).await;
        instance::create_admin(&postgres.url(), &redis.url());
        let proxy = match route {
            Route::Direct => None,
            Route::ThroughProxy => Some(Proxy::start(redis.port()).await),
        };
        let client = http::client();
        let mut world = Self {
            instances: Vec::new(),
            proxy,
            redis,
            postgres,
            // Readiness needs no token; writes get the administrator's once it has logged in.
            http: Http::new(client.clone(), String::new()),
            report: Report::new(title),
            loads: 0,
            folder,
            _alone: alone,
        };
        let first = match &world.proxy {
            Some(proxy) => format!("redis://127.0.0.1:{}", proxy.port()),
            None => world.redis.url(),
        };
        world.start_instance(&first).await;
        world.start_instance(&world.redis.url()).await;
        world.http = Http::new(client, world.login().await);
        world
    }

    /// Starts one more instance on `redis_url`, and waits until it is ready.
    pub async fn start_instance(&mut self, redis_url: &str) {
        let index = self.instances.len();
        let log = self.folder.0.join(format!("instance-{index}.log"));
        self.instances
            .push(Instance::start(&self.postgres.url(), redis_url, &log));
        let ready = poll(Duration::from_secs(60), || async {
            let readiness = self.http.readiness(&self.instances[index].base).await?;
            (readiness.status == "ok").then_some(())
        })
        .await;
        if ready.is_none() {
            self.instances[index].assert_running();
            panic!(
                "instance {index} is not ready after 60 s; log: {}",
                log.display()
            );
        }
    }

    async fn login(&self) -> String {
        let body = json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
        let response = http::client()
            .post(format!("{}/api/v1/auth/login", self.base(0)))
            .json(&body)
            .send()
            .await
            .unwrap();
        let json: serde_json::Value = response.json().await.unwrap();
        json["data"]["access_token"].as_str().unwrap().to_owned()
    }

    /// The base URL of instance `index`.
    pub fn base(&self, index: usize) -> &str {
        &self.instances[index].base
    }

    /// The base URLs of every instance.
    pub fn bases(&self) -> Vec<String> {
        self.instances
            .iter()
            .map(|instance| instance.base.clone())
            .collect()
    }

    /// Creates `count` markets named after `label` through instance 0; returns their ids.
    pub async fn seed(&self, label: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for number in 0..count {
            let name = format!("{label} {number} {}", TOPICS[number % TOPICS.len()]);
            let answer = self.http.create(self.base(0), &name).await.unwrap();
            assert_eq!(answer.status, 201, "{}", answer.json);
            ids.push(answer.id().unwrap());
        }
        ids
    }

    /// Starts a load over every instance: see [`Load::start`].
    pub fn load(&mut self, reads: &[String], writes: &[String]) -> Load {
        self.loads += 1;
        let tag = format!("load {}", self.loads);
        Load::start(&self.http, &self.bases(), reads, writes, &tag)
    }

    /// Reads `ids` until each instance has served each of them from the cache.
    pub async fn cache_everywhere(&mut self, ids: &[String]) {
        for base in self.bases() {
            for id in ids {
                let cached = poll(DEADLINE, || async {
                    self.http
                        .market(&base, id)
                        .await
                        .filter(|answer| answer.hit())
                })
                .await;
                assert!(cached.is_some(), "{base} never served {id} from the cache");
            }
        }
    }

    /// Polls instance `index`'s readiness until `wanted` holds: the time it took, or what was
    /// last seen.
    pub async fn readiness_until(
        &self,
        index: usize,
        within: Duration,
        wanted: impl Fn(&Readiness) -> bool,
    ) -> Result<Duration, String> {
        let base = self.base(index);
        let last = std::sync::Mutex::new(None);
        let reached = poll(within, || async {
            let readiness = self.http.readiness(base).await?;
            let reached = wanted(&readiness);
            *last.lock().unwrap() = Some(readiness);
            reached.then_some(())
        })
        .await;
        reached.map(|(took, ())| took).ok_or_else(|| {
            let last = last.into_inner().unwrap();
            let last =
                last.map_or_else(|| "no answer".to_owned(), |readiness| readiness.to_string());
            format!("{base} readiness after {within:?}: {last}")
        })
    }

    /// [`World::readiness_until`] on every instance; the time until all were so.
    pub async fn all_ready_until(
        &self,
        within: Duration,
        wanted: impl Fn(&Readiness) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        for index in 0..self.instances.len() {
            self.readiness_until(index, within, &wanted).await?;
        }
        Ok(start.elapsed())
    }

    /// Reads `id` on each instance until it serves it from the cache, and not stale: the time
    /// from `since` until every instance had, or which one did not within [`DEADLINE`].
    pub async fn hits_everywhere(&self, id: &str, since: Instant) -> Result<Duration, String> {
        let fresh_hit = |answer: &Answer| answer.hit() && !answer.stale;
        let mut last = since;
        for base in self.bases() {
            let hit = poll(DEADLINE, || async {
                self.http.market(&base, id).await.filter(fresh_hit)
            })
            .await
            .ok_or_else(|| {
                format!("{base} served {id} from the cache (fresh) not once in {DEADLINE:?}")
            })?;
            last = last.max(hit.1.answered);
        }
        Ok(last.duration_since(since))
    }

    /// Reads each of `ids` on every instance in turn for `duration`; every read is checked.
    pub async fn read_for(&self, ids: &[String], duration: Duration) -> u64 {
        let bases = self.bases();
        let start = Instant::now();
        let mut reads = 0;
        while start.elapsed() < duration {
            for base in &bases {
                for id in ids {
                    self.http.market(base, id).await;
                    reads += 1;
                }
            }
        }
        reads
    }

    /// Checks the database against the creates: every 201 is there (unless the harness deleted
    /// it), and no name is there twice.
    fn check_creates(&mut self) {
        let counts = self.http.counts();
        let rows = self.postgres.query("SELECT id, name FROM markets");
        let stored: HashMap<&str, &str> =
            rows.lines().filter_map(|row| row.split_once('|')).collect();
        let deleted: HashSet<&String> = counts.deletes.iter().collect();
        let lost: Vec<&(String, String)> = counts
            .created
            .iter()
            .filter(|(id, _)| !deleted.contains(id) && !stored.contains_key(id.as_str()))
            .collect();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for name in stored.values() {
            *names.entry(name).or_default() += 1;
        }
        let twice: Vec<&&str> = names
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(name, _)| name)
            .collect();
        let sent: HashSet<&String> = counts.create_names.iter().collect();
        let found = stored
            .values()
            .filter(|name| sent.contains(&(**name).to_owned()))
            .count();
        self.report.row(
            "creates sent / answered 201 / in the database",
            format!(
                "{} / {} / {found}",
                counts.create_names.len(),
                counts.created.len()
            ),
        );
        self.report.row(
            "markets lost / duplicated",
            format!("{} / {}", lost.len(), twice.len()),
        );
        self.report.require(lost.is_empty(), || {
            format!("creates that answered 201 are missing: {lost:?}")
        });
        self.report.require(twice.is_empty(), || {
            format!("names stored more than once: {twice:?}")
        });
    }

    /// Checks the creates, adds the request counts to the report and finishes it: panics, after
    /// printing the table, if the scenario saw any problem.
    pub fn finish(mut self) {
        self.check_creates();
        let counts = self.http.counts();
        self.report.counts(&counts);
        std::mem::replace(&mut self.report, Report::new("")).finish();
    }
}

/// The scenario's folder under `/var/tmp/markets-faults` (which the `postgres` user can
/// traverse), removed when dropped unless the scenario failed: then the logs stay.
#[derive(Debug)]
struct Folder(PathBuf);

impl Folder {
    fn new(title: &str) -> Self {
        let words: Vec<String> = title
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let slug = words.join("-");
        let path = PathBuf::from("/var/tmp/markets-faults").join(format!(
            "{slug}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
