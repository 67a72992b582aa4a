//! The load: concurrent readers (about 90% reads: markets by id, list pages, searches; 10%
//! creates with unique names), and optionally a writer that PATCHes and DELETEs markets one
//! after the other, through both instances in turn. Every request is checked by [`Http`].

use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::http::Http;

/// Words the seeded markets are named after, so that searches find something.
pub const TOPICS: [&str; 5] = ["rain", "elections", "football", "inflation", "harvest"];

/// Readers running at once.
const READERS: usize = 12;

/// A running load; [`Load::stop`] ends it.
#[derive(Debug)]
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Load {
    /// Starts the readers over `bases`, reading `reads` by id and creating markets named after
    /// `tag`; and, if `writes` is not empty, the writer over those markets.
    pub fn start(
        http: &Http,
        bases: &[String],
        reads: &[String],
        writes: &[String],
        tag: &str,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let bases: Arc<[String]> = bases.into();
        let reads: Arc<[String]> = reads.iter().chain(writes).cloned().collect();
        for reader in 0..READERS {
            let work = Reader {
                http: http.clone(),
                bases: bases.clone(),
                reads: reads.clone(),
                name: format!("{tag} reader {reader}"),
                number: reader,
            };
            tasks.spawn(work.run(stopped.clone()));
        }
        if !writes.is_empty() {
            tasks.spawn(write(http.clone(), bases, writes.to_vec(), stopped));
        }
        Self { stop, tasks }
    }

    /// Stops every task after its request in flight.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
    }
}

struct Reader {
    http: Http,
    bases: Arc<[String]>,
    reads: Arc<[String]>,
    name: String,
    number: usize,
}

impl Reader {
    async fn run(self, stopped: watch::Receiver<bool>) {
        for step in 0usize.. {
            if *stopped.borrow() {
                return;
            }
            let base = &self.bases[(self.number + step) % self.bases.len()];
            let topic = TOPICS[step % TOPICS.len()];
            match step % 20 {
                0 | 10 => drop(
                    self.http
                        .create(base, &format!("{} {step} {topic}", self.name))
                        .await,
                ),
                1 | 2 => drop(
                    self.http
                        .read(base, &format!("/api/v1/markets/search?query={topic}"))
                        .await,
                ),
                3..=6 => {
                    let page = step / 20 % 3 + 1;
                    drop(
                        self.http
                            .read(base, &format!("/api/v1/markets?page={page}&page_size=20"))
                            .await,
                    );
                }
                _ => {
                    let id = &self.reads[(self.number * 7 + step) % self.reads.len()];
                    drop(self.http.market(base, id).await);
                }
            }
        }
    }
}

/// PATCHes `markets` round-robin and DELETEs one of them every twelfth write while more than
/// two are left. A market whose DELETE did not answer 204 may be gone: it is not written again.
async fn write(
    http: Http,
    bases: Arc<[String]>,
    mut markets: Vec<String>,
    stopped: watch::Receiver<bool>,
) {
    for step in 0usize.. {
        if *stopped.borrow() {
            return;
        }
        let base = &bases[step % bases.len()];
        let index = step % markets.len();
        if step % 12 == 11 && markets.len() > 2 {
            let id = markets.swap_remove(index);
            http.delete(base, &id).await;
        } else {
            http.patch(base, &markets[index]).await;
        }
    }
}
