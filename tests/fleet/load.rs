//! The load a fault scenario runs through nginx from just before the fault until the fleet has
//! recovered: a few clients reading markets by id, list pages and searches (and, when asked,
//! logging in), each request from a fresh client address so that no rate limit refuses it,
//! every answer counted by status class.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::api::{Api, Reply, client_address};
use super::poll;

/// Clients running at once.
const CLIENTS: usize = 4;

/// How many failed requests the report quotes.
const EXAMPLES: usize = 5;

/// What the load's requests added up to.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Requests by status class (`2xx`, `4xx`, ...), and `no answer`.
    pub classes: BTreeMap<&'static str, u64>,
    /// 5xx answers and requests nginx did not answer: what a fault must not cause.
    pub failures: u64,
    /// Answers nginx got only from another instance than the first it tried
    /// (`X-Fleet-Upstream` names both).
    pub retried: u64,
    /// A few of the failures.
    pub examples: Vec<String>,
}

impl Tally {
    /// Every request sent.
    pub fn requests(&self) -> u64 {
        self.classes.values().sum()
    }

    fn record(&mut self, what: &str, answer: Result<Reply, String>) {
        let (class, failure) = match &answer {
            Ok(reply) => (class(reply.status), reply.status >= 500),
            Err(_) => ("no answer", true),
        };
        *self.classes.entry(class).or_default() += 1;
        if let Ok(reply) = &answer {
            let upstream = reply.header("x-fleet-upstream").unwrap_or_default();
            self.retried += u64::from(upstream.contains(','));
        }
        if failure {
            self.failures += 1;
            if self.examples.len() < EXAMPLES {
                let got = answer.map_or_else(|error| error, |reply| reply.status.to_string());
                self.examples.push(format!("{what}: {got}"));
            }
        }
    }
}

/// `1234 (2xx 1200, 4xx 34; 3 retried by nginx)`.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classes: Vec<String> = self
            .classes
            .iter()
            .map(|(class, count)| format!("{class} {count}"))
            .collect();
        write!(f, "{} ({}", self.requests(), classes.join(", "))?;
        if self.retried > 0 {
            write!(f, "; {} retried by nginx", self.retried)?;
        }
        write!(f, ")")
    }
}

fn class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A running load; [`Load::stop`] ends it.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    tally: Arc<Mutex<Tally>>,
}

impl Load {
    /// Starts the clients on `url`, reading the markets `ids` among the rest, and logging in
    /// as `login` (a user's email) every tenth request when given.
    pub fn start(api: &Api, url: &str, ids: &[String], login: Option<&str>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let tally = Arc::<Mutex<Tally>>::default();
        let ids: Arc<[String]> = ids.into();
        let mut tasks = JoinSet::new();
        for number in 0..CLIENTS {
            let client = Client {
                api: api.clone(),
                url: url.to_owned(),
                ids: ids.clone(),
                login: login.map(str::to_owned),
                tally: tally.clone(),
            };
            tasks.spawn(client.run(number, stopped.clone()));
        }
        Self { stop, tasks, tally }
    }

    /// The counts so far.
    fn tally(&self) -> Tally {
        self.tally.lock().expect("the tally").clone()
    }

    /// Waits until `count` more requests have been answered (or failed) from now: the load has
    /// then been through whatever the fleet is in.
    pub async fn more(&self, count: u64) -> Result<(), String> {
        let target = self.tally().requests() + count;
        poll(&format!("{count} more requests of the load"), || async {
            let sent = self.tally().requests();
            (sent >= target)
                .then_some(())
                .ok_or_else(|| format!("{sent} sent"))
        })
        .await
    }

    /// Stops every client after its request in flight; the counts.
    pub async fn stop(mut self) -> Tally {
        self.stop.send_replace(true);
        while let Some(done) = self.tasks.join_next().await {
            done.expect("a load client panicked");
        }
        self.tally()
    }
}

/// One client of the load.
struct Client {
    api: Api,
    url: String,
    ids: Arc<[String]>,
    login: Option<String>,
    tally: Arc<Mutex<Tally>>,
}

impl Client {
    /// Sends requests one after the other, starting at a step of its own, until stopped.
    async fn run(self, number: usize, stopped: watch::Receiver<bool>) {
        for step in (number * 3).. {
            if *stopped.borrow() {
                return;
            }
            let (what, answer) = self.request(step).await;
            self.tally.lock().expect("the tally").record(&what, answer);
        }
    }

    /// Request `step` of a cycle of ten: a login (or a list page), two lists, a search, six
    /// markets by id.
    async fn request(&self, step: usize) -> (String, Result<Reply, String>) {
        let path = match (step % 10, &self.login) {
            (0, Some(email)) => {
                let answer = self.api.login(&self.url, email, &client_address()).await;
                return ("POST /api/v1/auth/login".to_owned(), answer);
            }
            (0..=2, _) => format!("/api/v1/markets?page={}&page_size=20", step % 3 + 1),
            (3, _) => "/api/v1/markets/search?query=fleet".to_owned(),
            _ => format!("/api/v1/markets/{}", self.ids[step % self.ids.len()]),
        };
        let answer = self.api.get(&self.url, &path).await;
        (format!("GET {path}"), answer)
    }
}
