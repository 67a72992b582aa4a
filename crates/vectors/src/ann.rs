//! Approximate nearest neighbours for the in-memory copy: an HNSW graph (`hnsw_rs`) over the
//! same [`Unit`]s the copy's rows hold, so the vectors are in memory once.
//!
//! `hnsw_rs` inserts one point at a time into a live graph, which is what `store` needs: a new
//! or re-stored embedding goes in as a new point. A re-stored market's old point stays in the
//! graph as a tombstone (HNSW cannot unlink a point without hurting its neighbours' paths):
//! searches skip it through a filter, and once tombstones pass a quarter of the rows the graph
//! is rebuilt. A deleted market needs nothing here: deletions change the stored generation, and
//! a reload starts a new copy and a new graph.
//!
//! Building the graph for 100,000 vectors of 1536 dimensions takes minutes, so it is never done
//! on a request's path: the first search over a large copy starts a build on a thread of its
//! own and searches scan exactly until it is done. The build inserts on every core (rayon's pool):
//! requests share them meanwhile, and the sooner the graph is ready the sooner searches stop
//! scanning everything. The finished graph is then brought up to date with rows stored
//! meanwhile and swapped in by the next search. A copy dropped by a reload cancels its build.

use hnsw_rs::prelude::{Distance, Hnsw};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, TryLockError};
use std::thread::{self, JoinHandle};

use crate::unit::{Unit, dot_half, unit};

/// Copies with fewer rows are scanned exactly: below this an exact scan takes a few
/// milliseconds at 1536 dimensions, is exact, and needs no graph's memory or build time.
const EXACT_BELOW: usize = 4096;

/// Links kept per point and layer (HNSW's `M`; layer 0 keeps twice as many). 16 is the usual
/// balance: fewer lose recall on clustered embeddings, more cost memory and insert time.
const LINKS: usize = 16;

/// Candidates weighed when inserting a point (`ef_construction`): a better-connected graph for a
/// slower insert. 100 already gives the synthetic set a recall@10 of 1.0 at 100,000; real
/// embeddings are harder, which [`EF_SEARCH`]'s margin is for.
const EF_CONSTRUCTION: usize = 100;

/// Candidates kept while searching (`ef_search`), at least the number asked for. All of them are
/// rescored exactly against the `f32` query, so the order returned is the exact order of what
/// the graph found. With [`LINKS`] and [`EF_CONSTRUCTION`] this keeps recall@10 above 0.95
/// against the exact scan (the `ann_recall` example measures it at 100,000).
const EF_SEARCH: usize = 64;

/// Layers the graph may have (`hnsw_rs`' maximum).
const MAX_LAYERS: usize = 16;

/// Rows a build inserts in parallel between checks whether it was cancelled.
const BATCH: usize = 1024;

/// Cosine distance between stored unit vectors: `1 - dot`. Each graph point's data is a slice
/// of one [`Unit`].
struct Cosine;

impl Distance<Unit> for Cosine {
    fn eval(&self, a: &[Unit], b: &[Unit]) -> f32 {
        match (a.first(), b.first()) {
            (Some(a), Some(b)) => (1.0 - dot_half(a, b)).max(0.0),
            _ => 1.0,
        }
    }
}

/// A graph point: the copy's row it stands for and the vector it was inserted with (compared by
/// pointer to spot a row stored again since).
struct Point {
    row: usize,
    vector: Unit,
}

/// An HNSW graph over the copy's rows, tombstones included.
struct Graph {
    hnsw: Hnsw<'static, Unit, Cosine>,
    /// Indexed by the graph's data id.
    points: Vec<Point>,
    /// Each row's live point.
    live: Vec<usize>,
    /// Points no longer live.
    tombstones: usize,
}

impl Graph {
    fn with_capacity(rows: usize) -> Self {
        Self {
            hnsw: Hnsw::new(LINKS, rows, MAX_LAYERS, EF_CONSTRUCTION, Cosine),
            points: Vec::with_capacity(rows),
            live: Vec::with_capacity(rows),
            tombstones: 0,
        }
    }

    /// A graph over `vectors`, or `None` if `cancel` was set meanwhile. Inserted a batch at a
    /// time on every core (`hnsw_rs`' parallel insert).
    fn build(vectors: &[Unit], cancel: &AtomicBool) -> Option<Self> {
        let mut graph = Self::with_capacity(vectors.len());
        for (batch, chunk) in vectors.chunks(BATCH).enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return None;
            }
            let first = batch * BATCH;
            let inserted: Vec<(&[Unit], usize)> = chunk
                .iter()
                .enumerate()
                .map(|(offset, vector)| (std::slice::from_ref(vector), first + offset))
                .collect();
            graph.hnsw.parallel_insert_slice(&inserted);
            graph
                .points
                .extend(chunk.iter().enumerate().map(|(offset, vector)| Point {
                    row: first + offset,
                    vector: Arc::clone(vector),
                }));
            graph.live.extend(first..first + chunk.len());
        }
        Some(graph)
    }

    /// Makes `vector` row `row`'s live point, unless it already is. Rows are new in order: a
    /// row past the last one known is the next one.
    fn put(&mut self, row: usize, vector: &Unit) {
        let live = self.live.get(row).copied();
        if live.is_some_and(|point| Arc::ptr_eq(&self.points[point].vector, vector)) {
            return;
        }
        let point = self.points.len();
        self.hnsw
            .insert_slice((std::slice::from_ref(vector), point));
        self.points.push(Point {
            row,
            vector: Arc::clone(vector),
        });
        match self.live.get_mut(row) {
            Some(slot) => {
                *slot = point;
                self.tombstones += 1;
            }
            None => self.live.push(point),
        }
    }

    /// Brings the graph up to date with `vectors` (rows stored while it was built).
    fn catch_up(&mut self, vectors: &[Unit]) {
        for (row, vector) in vectors.iter().enumerate() {
            self.put(row, vector);
        }
    }

    fn is_live(&self, point: usize) -> bool {
        self.points
            .get(point)
            .is_some_and(|p| self.live.get(p.row) == Some(&point))
    }

    /// The rows of about the `count` vectors closest to `query` (a unit vector), at least
    /// [`EF_SEARCH`] of them: tombstones are filtered out during the search, not after it, so
    /// they never cut the answer short.
    fn nearest(&self, query: &Unit, count: usize) -> Vec<usize> {
        let ef = EF_SEARCH.max(count);
        let live = |point: &usize| self.is_live(*point);
        self.hnsw
            .search_filter(std::slice::from_ref(query), ef, ef, Some(&live))
            .into_iter()
            .filter_map(|found| self.points.get(found.d_id).map(|point| point.row))
            .collect()
    }

    fn needs_rebuild(&self) -> bool {
        self.tombstones * 4 > self.live.len()
    }
}

/// Sets its flag when dropped: a build whose copy is gone stops at its next check.
struct Cancel(Arc<AtomicBool>);

impl Drop for Cancel {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A graph being built on a thread of its own.
struct Build {
    thread: JoinHandle<Option<Graph>>,
    _cancel: Cancel,
}

/// The approximate index of one copy: the graph once built, and the build under way.
///
/// Searches hold the copy's read lock, so these locks only order searches among themselves;
/// the build lock is only ever tried, never waited for, so no search waits behind another.
#[derive(Default)]
pub(crate) struct Ann {
    graph: RwLock<Option<Graph>>,
    build: Mutex<Option<Build>>,
    /// A build panicked or its thread could not start: exact until the next reload.
    failed: AtomicBool,
}

fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Ann {
    /// Records row `row`'s new vector in the graph, if there is one (a build under way catches
    /// up when it is installed).
    pub(crate) fn put(&mut self, row: usize, vector: &Unit) {
        let graph = self.graph.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(graph) = graph {
            graph.put(row, vector);
        }
    }

    /// The rows to score for the `count` vectors closest to `query` (a unit vector) among
    /// `vectors`, or `None` to scan them all: the copy is small, the graph is not built yet,
    /// or nearly every row is asked for.
    pub(crate) fn candidates(
        &self,
        vectors: &[Unit],
        query: &[f32],
        count: usize,
    ) -> Option<Vec<usize>> {
        if vectors.len() < EXACT_BELOW || count.saturating_mul(2) >= vectors.len() {
            return None;
        }
        self.install_built(vectors);
        let graph = self.graph.read().unwrap_or_else(PoisonError::into_inner);
        let Some(graph) = graph.as_ref() else {
            self.start_build(vectors);
            return None;
        };
        if graph.needs_rebuild() {
            self.start_build(vectors);
        }
        Some(graph.nearest(&unit(query), count))
    }

    /// Starts building a graph over `vectors` unless one is under way (or building failed).
    fn start_build(&self, vectors: &[Unit]) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        let Some(mut build) = try_lock(&self.build) else {
            return;
        };
        if build.is_some() {
            return;
        }
        let snapshot = vectors.to_vec();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let spawned = thread::Builder::new()
            .name("vector-graph".into())
            .spawn(move || Graph::build(&snapshot, &flag));
        match spawned {
            Ok(thread) => {
                tracing::info!(vectors = vectors.len(), "building the vector graph");
                *build = Some(Build {
                    thread,
                    _cancel: Cancel(cancel),
                });
            }
            Err(error) => self.fail(&error),
        }
    }

    /// Swaps in a finished build, brought up to date with `vectors`.
    fn install_built(&self, vectors: &[Unit]) {
        let Some(mut build) = try_lock(&self.build) else {
            return;
        };
        if !build.as_ref().is_some_and(|b| b.thread.is_finished()) {
            return;
        }
        if let Some(finished) = build.take() {
            self.install(finished, vectors);
        }
    }

    /// Waits for `build` and swaps its graph in, brought up to date with `vectors`.
    fn install(&self, build: Build, vectors: &[Unit]) {
        // `_cancel` stays alive (not cancelling) until the thread is joined.
        let Build { thread, _cancel } = build;
        match thread.join() {
            Ok(Some(mut graph)) => {
                graph.catch_up(vectors);
                tracing::info!(vectors = vectors.len(), "vector graph ready");
                *self.graph.write().unwrap_or_else(PoisonError::into_inner) = Some(graph);
            }
            Ok(None) => {}
            Err(_) => self.fail(&"the build panicked"),
        }
    }

    fn fail(&self, error: &dyn std::fmt::Display) {
        tracing::error!(%error, "building the vector graph failed: searching exactly");
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Builds the graph over `vectors` now, on this thread's watch: for measuring it.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn build_now(&self, vectors: &[Unit]) {
        self.start_build(vectors);
        let build = try_lock(&self.build).and_then(|mut build| build.take());
        if let Some(build) = build {
            self.install(build, vectors);
        }
    }
}
