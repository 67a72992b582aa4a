//! The hashing queue: at most `max_concurrent` hashes run at once, each in a reusable argon2
//! memory of its slot; at most `max_waiting` callers wait for a slot, each for at most
//! `queue_timeout`. A caller past either bound gets [`HashError::Busy`], at once or when its
//! wait ends, instead of joining a queue that only grows under a flood.
//!
//! Verifications (logins) go first: new hashes (registrations) may take only half of the
//! waiting places, so a flood of them always leaves room for verifications, and only one of
//! them at a time waits in the slots' queue, so a verification waits for at most the running
//! hashes and one more.
//!
//! A slot, once granted, belongs to the blocking task doing the work, not to the caller's
//! future: a caller that goes away (a client disconnecting drops the request's future) leaves
//! the slot taken until the hash it started has finished, so cancelled requests cannot make
//! more hashes run at once than there are slots.

use argon2::Block;
use markets_domain::auth::HashError;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use super::phc;

/// What a caller wants done, which decides the places it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A new hash: a registration, a password change.
    Hash,
    /// Checking a password against a stored hash: a login.
    Verify,
}

/// A bounded queue of hashing work over reusable memories.
#[derive(Debug)]
pub struct HashingQueue {
    /// Places in the queue, running and waiting callers together; taken without waiting.
    places: Arc<Semaphore>,
    /// The share of `places` that new hashes may take as well.
    hash_places: Arc<Semaphore>,
    /// Slots to run in, one per hash that may run at once.
    slots: Arc<Semaphore>,
    /// The one new hash that may wait in the slots' queue (see [`HashingQueue::next_slot`]).
    hash_lane: Arc<Semaphore>,
    memories: Arc<MemoryPool>,
    /// The longest a caller waits for a slot.
    wait: Duration,
}

impl HashingQueue {
    /// A queue of `slots` slots (at least one) and `waiting` places to wait in, each waiter
    /// waiting at most `wait`; every slot's memory holds `blocks` blocks.
    pub fn new(slots: usize, waiting: usize, wait: Duration, blocks: usize) -> Self {
        let slots = slots.max(1);
        Self {
            places: Arc::new(Semaphore::new(slots.saturating_add(waiting))),
            hash_places: Arc::new(Semaphore::new(slots.saturating_add(waiting / 2))),
            slots: Arc::new(Semaphore::new(slots)),
            hash_lane: Arc::new(Semaphore::new(1)),
            memories: Arc::new(MemoryPool::new(blocks)),
            wait,
        }
    }

    /// Runs `work` on tokio's blocking pool, in a slot's memory, once a slot is free.
    ///
    /// # Errors
    /// [`HashError::Busy`] when every place in the queue open to `kind` is taken or no slot
    /// came free within the wait; whatever `work` returns; [`HashError::Failed`] if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        kind: Work,
        work: impl FnOnce(&mut [Block]) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let slot = self.slot(kind).await?;
        let memories = Arc::clone(&self.memories);
        tokio::task::spawn_blocking(move || {
            let mut memory = memories.take();
            let outcome = work(&mut memory);
            memories.put(memory);
            // Only now, whether or not anyone still awaits the outcome.
            drop(slot);
            outcome
        })
        .await
        .map_err(HashError::failed)?
    }

    /// A place in the queue, then a slot.
    async fn slot(&self, kind: Work) -> Result<Slot, HashError> {
        let hash_place = match kind {
            Work::Hash => Some(self.place(&self.hash_places)?),
            Work::Verify => None,
        };
        let place = self.place(&self.places)?;
        let slot = tokio::time::timeout(self.wait, self.next_slot(kind))
            .await
            .map_err(|_| self.busy())?
            .map_err(HashError::failed)?;
        Ok(Slot {
            _hash_place: hash_place,
            _place: place,
            _slot: slot,
        })
    }

    /// Waits for a slot. New hashes first wait for the one lane to the slots' queue, so that
    /// a verification queues behind at most one new hash however many are waiting.
    async fn next_slot(&self, kind: Work) -> Result<OwnedSemaphorePermit, AcquireError> {
        let lane = match kind {
            Work::Hash => Some(Arc::clone(&self.hash_lane).acquire_owned().await?),
            Work::Verify => None,
        };
        let slot = Arc::clone(&self.slots).acquire_owned().await?;
        drop(lane);
        Ok(slot)
    }

    /// A place from `places`, if one is free now.
    fn place(&self, places: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, HashError> {
        Arc::clone(places)
            .try_acquire_owned()
            .map_err(|_| self.busy())
    }

    /// Busy, with a hint to retry no sooner than a waiter would have waited (at least 1 s):
    /// the queue has just been full for that long.
    fn busy(&self) -> HashError {
        HashError::Busy {
            retry_after: self.wait.max(Duration::from_secs(1)),
        }
    }

    /// Slots free right now.
    #[cfg(test)]
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Memories allocated so far.
    #[cfg(test)]
    pub fn memories_allocated(&self) -> usize {
        self.memories.allocated.load(Ordering::Relaxed)
    }
}

/// A granted slot and the queue places it came through, released together when dropped.
#[derive(Debug)]
struct Slot {
    _hash_place: Option<OwnedSemaphorePermit>,
    _place: OwnedSemaphorePermit,
    _slot: OwnedSemaphorePermit,
}

/// argon2 memories, allocated when first needed and kept: only a slot's holder takes one, so
/// there are never more than slots (a memory is lost only if work panics).
struct MemoryPool {
    blocks: usize,
    free: Mutex<Vec<Vec<Block>>>,
    allocated: AtomicUsize,
}

impl MemoryPool {
    fn new(blocks: usize) -> Self {
        Self {
            blocks,
            free: Mutex::new(Vec::new()),
            allocated: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Vec<Block> {
        let pooled = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        pooled.unwrap_or_else(|| {
            self.allocated.fetch_add(1, Ordering::Relaxed);
            phc::memory(self.blocks)
        })
    }

    fn put(&self, memory: Vec<Block>) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
    }
}

/// Sizes only: the memories themselves are megabytes of hash state.
impl fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPool")
            .field("blocks", &self.blocks)
            .field("allocated", &self.allocated.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const LONG: Duration = Duration::from_secs(60);

    /// Starts work on `queue` that blocks until the returned sender is sent to; returns once
    /// the work is running.
    async fn start_held(
        queue: &Arc<HashingQueue>,
    ) -> (JoinHandle<Result<(), HashError>>, mpsc::Sender<()>) {
        let (started, started_rx) = oneshot::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let queue = Arc::clone(queue);
        let caller = tokio::spawn(async move {
            queue
                .run(Work::Hash, move |_| {
                    started.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .await
        });
        started_rx.await.unwrap();
        (caller, release)
    }

    #[tokio::test]
    async fn a_cancelled_caller_keeps_its_slot_until_its_work_ends() {
        let queue = Arc::new(HashingQueue::new(1, 4, LONG, 8));
        let (caller, release) = start_held(&queue).await;
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(
            queue.free_slots(),
            0,
            "the running work still holds the slot"
        );

        release.send(()).unwrap();
        // Waits for the slot, which comes free when the first work ends.
        queue.run(Work::Hash, |_| Ok(())).await.unwrap();
        assert_eq!(queue.free_slots(), 1);
    }

    #[tokio::test]
    async fn a_caller_that_gets_no_slot_within_the_wait_is_busy() {
        let queue = Arc::new(HashingQueue::new(1, 4, Duration::from_millis(20), 8));
        let (caller, release) = start_held(&queue).await;
        // The slot stays taken until released, so this wait can only end in a refusal.
        let refused = queue.run(Work::Hash, |_| Ok(())).await;
        match refused {
            Err(HashError::Busy { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(1), "at least a second");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        release.send(()).unwrap();
        caller.await.unwrap().unwrap();
    }

    /// Queues `kind` work doing `then` on `queue` and returns once it holds its places.
    async fn queue_waiter(
        queue: &Arc<HashingQueue>,
        kind: Work,
        then: impl FnOnce() + Send + 'static,
    ) -> JoinHandle<Result<(), HashError>> {
        let free = queue.places.available_permits();
        let waiter = tokio::spawn({
            let queue = Arc::clone(queue);
            async move {
                queue
                    .run(kind, |_| {
                        then();
                        Ok(())
                    })
                    .await
            }
        });
        // Not a timing wait: the spawned task takes its place when it is first polled.
        while queue.places.available_permits() == free {
            tokio::task::yield_now().await;
        }
        waiter
    }

    fn assert_busy(outcome: Result<(), HashError>, retry_after: Duration) {
        match outcome {
            Err(HashError::Busy { retry_after: hint }) => assert_eq!(hint, retry_after),
            other => panic!("expected Busy, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn past_their_waiting_places_callers_are_refused_at_once() {
        let queue = Arc::new(HashingQueue::new(1, 2, LONG, 8));
        let (running, release) = start_held(&queue).await;
        let hash = queue_waiter(&queue, Work::Hash, || ()).await;
        // One place is still free, but not to a new hash: that one is kept for verifications.
        assert_eq!(queue.places.available_permits(), 1);
        assert_busy(queue.run(Work::Hash, |_| Ok(())).await, LONG);
        let verification = queue_waiter(&queue, Work::Verify, || ()).await;
        assert_busy(queue.run(Work::Verify, |_| Ok(())).await, LONG);
        release.send(()).unwrap();
        running.await.unwrap().unwrap();
        hash.await.unwrap().unwrap();
        verification.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_verification_overtakes_all_but_one_waiting_hash() {
        let queue = Arc::new(HashingQueue::new(1, 4, LONG, 8));
        let (running, release) = start_held(&queue).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (name, kind) in [
            ("hash 1", Work::Hash),
            ("hash 2", Work::Hash),
            ("login", Work::Verify),
        ] {
            let order = Arc::clone(&order);
            let waiter = queue_waiter(&queue, kind, move || order.lock().unwrap().push(name)).await;
            waiters.push(waiter);
        }
        release.send(()).unwrap();
        running.await.unwrap().unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["hash 1", "login", "hash 2"]);
    }

    #[tokio::test]
    async fn memories_are_reused_one_per_slot() {
        let queue = Arc::new(HashingQueue::new(2, 64, LONG, 8));
        let runs: Vec<_> = (0..40)
            .map(|_| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move {
                    queue
                        .run(Work::Verify, |memory| {
                            assert_eq!(memory.len(), 8);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for run in runs {
            run.await.unwrap().unwrap();
        }
        let allocated = queue.memories_allocated();
        assert!(
            (1..=2).contains(&allocated),
            "{allocated} memories for 2 slots"
        );
    }
}
