//! What each market the harness wrote must look like to a read, by when the read started.
//!
//! Every market the harness creates has the description `rev 0`; each PATCH sets `rev N` with
//! N one more than any sent before. A write that answered success established its revision (or
//! the market's absence) at the instant its response arrived: a read that *starts* after that
//! instant and shows an older revision, or shows a deleted market, is a stale read. A write
//! that failed (503, a dropped connection) may or may not have committed, so it establishes
//! nothing, but a read may show it: a newer revision than established is never wrong, and a
//! 404 is right once a DELETE has been sent before the read's answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// What a read showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The market, at this revision.
    Revision(u64),
    /// 404.
    Missing,
}

/// What a read that started after a successful write must show at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Established {
    Revision(u64),
    Deleted,
}

/// How a read compares with the writes before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Consistent with every write that finished before it started.
    Fresh,
    /// Shows a revision older than one established before it started, or a deleted market.
    Stale(String),
    /// 404 for a market no DELETE was ever sent for.
    Wrong(String),
}

#[derive(Debug, Default)]
struct History {
    /// In the order the writes answered (one writer per market).
    established: Vec<(Instant, Established)>,
    last_sent: u64,
    delete_sent: Option<Instant>,
}

/// The histories of every market the harness created.
#[derive(Debug, Default)]
pub struct Tracker {
    markets: Mutex<HashMap<String, History>>,
}

impl Tracker {
    fn with<T>(&self, id: &str, change: impl FnOnce(&mut History) -> T) -> T {
        change(
            self.markets
                .lock()
                .unwrap()
                .entry(id.to_owned())
                .or_default(),
        )
    }

    /// A create answered 201 at `at`: revision 0.
    pub fn created(&self, id: &str, at: Instant) {
        self.with(id, |history| {
            history.established.push((at, Established::Revision(0)))
        });
    }

    /// The revision the next PATCH of `id` sets (and records that it is being sent).
    pub fn next_revision(&self, id: &str) -> u64 {
        self.with(id, |history| {
            history.last_sent += 1;
            history.last_sent
        })
    }

    /// A PATCH to `revision` answered 200 at `at`.
    pub fn patched(&self, id: &str, revision: u64, at: Instant) {
        let established = Established::Revision(revision);
        self.with(id, |history| history.established.push((at, established)));
    }

    /// A DELETE is being sent now.
    pub fn delete_sent(&self, id: &str) {
        self.with(id, |history| {
            history.delete_sent.get_or_insert_with(Instant::now);
        });
    }

    /// A DELETE answered 204 at `at`.
    pub fn deleted(&self, id: &str, at: Instant) {
        self.with(id, |history| {
            history.established.push((at, Established::Deleted))
        });
    }

    /// Judges a read of `id` that started at `started`, answered at `answered` and showed `seen`.
    pub fn check(&self, id: &str, started: Instant, answered: Instant, seen: Seen) -> Verdict {
        let markets = self.markets.lock().unwrap();
        let Some(history) = markets.get(id) else {
            return Verdict::Fresh;
        };
        let floor = history
            .established
            .iter()
            .rev()
            .find(|(at, _)| *at <= started)
            .map(|(at, established)| (started.duration_since(*at), *established));
        match (seen, floor) {
            (Seen::Revision(shown), Some((after, Established::Deleted))) => Verdict::Stale(
                format!("{id} showed rev {shown}, {after:?} after its DELETE answered 204"),
            ),
            (Seen::Revision(shown), Some((after, Established::Revision(floor))))
                if shown < floor =>
            {
                Verdict::Stale(format!(
                    "{id} showed rev {shown}, {after:?} after a PATCH to rev {floor} answered 200"
                ))
            }
            (Seen::Missing, _) if history.delete_sent.is_none_or(|sent| sent > answered) => {
                Verdict::Wrong(format!("{id} answered 404 but was never deleted"))
            }
            _ => Verdict::Fresh,
        }
    }
}
