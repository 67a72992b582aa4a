//! Repeatable events (refusals) coalesced in this process before they reach the trail's tallies
//! ([`AuditLog::tally`]), so that a client flooding a refused route costs the store a bounded
//! number of writes, not one per request: on SQLite every write takes the single writer lock.
//!
//! The first event of a key (client, action, target, minute) is written at once, so the trail
//! shows a flood as soon as it starts; its repeats are only counted here, and [`Tallies::flush`]
//! adds each key's count to its row in one write. The store merges the counts, so instances that
//! see the same client add up to one row. The map of held keys is bounded: past its capacity an
//! event of a new key is written on its own, an upsert that loses no count. A write that fails is
//! held back for the next flush (within the same bound), so a store outage costs no count
//! either; what is held when the process dies without a final flush is lost, at most one flush
//! period's worth per key.

use chrono::{TimeDelta, Utc};
use markets_domain::audit::{AuditEvent, AuditEventId, AuditLog};
use markets_domain::error::report;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// The events of one key counted since its last write, and the first of them, which stands for
/// them all when the key's row has to be made.
#[derive(Debug)]
struct Held {
    event: AuditEvent,
    count: u64,
}

/// The keys held in this process, up to a capacity, and the trail they are flushed to.
pub(super) struct Tallies {
    trail: Arc<dyn AuditLog>,
    held: Mutex<HashMap<String, Held>>,
    capacity: usize,
}

impl fmt::Debug for Tallies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tallies")
            .field("trail", &self.trail)
            .field("held", &self.lock().len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Tallies {
    /// Tallies into `trail`, holding at most `capacity` keys.
    pub(super) fn new(trail: Arc<dyn AuditLog>, capacity: usize) -> Self {
        Self {
            trail,
            held: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Counts `event`: written at once if it is the first of its key held here (or if no key can
    /// be held any more), otherwise added to its key's count until the next flush.
    pub(super) async fn add(&self, event: AuditEvent) {
        let key = event.tally_key();
        {
            let mut held = self.lock();
            if let Some(repeat) = held.get_mut(&key) {
                repeat.count += 1;
                return;
            }
            if held.len() < self.capacity {
                let first = Held {
                    event: event.clone(),
                    count: 0,
                };
                held.insert(key.clone(), first);
            }
        }
        self.write(key, event, 1).await;
    }

    /// Writes each key's count held since its last write, one tally per key, and forgets the keys
    /// whose minute is over (a later event falls in another key).
    pub(super) async fn flush(&self) {
        for (key, event, count) in self.take_due() {
            self.write(key, event, count).await;
        }
    }

    /// The keys with counts to write, each with its first event under a fresh id (the row
    /// normally exists, and the id only matters when it does not) and the count, which starts
    /// again from zero here.
    fn take_due(&self) -> Vec<(String, AuditEvent, u64)> {
        let now = Utc::now();
        let mut due = Vec::new();
        self.lock().retain(|key, held| {
            if held.count > 0 {
                let event = AuditEvent {
                    id: AuditEventId::new(),
                    ..held.event.clone()
                };
                due.push((key.clone(), event, std::mem::take(&mut held.count)));
            }
            held.event.tally_minute() + TimeDelta::minutes(1) > now
        });
        due
    }

    /// Tallies `count` of `event` in the trail; on failure holds the count back for the next
    /// flush, or, with no room to hold it, logs it as lost.
    async fn write(&self, key: String, event: AuditEvent, count: u64) {
        let Err(error) = self.trail.tally(&event, count).await else {
            return;
        };
        let request_id = event.request_id.clone().unwrap_or_default();
        let error = report(&error);
        if self.hold_back(key, event, count) {
            tracing::warn!(%request_id, %error, count, "audit tally not stored; retried at the next flush");
        } else {
            tracing::error!(%request_id, %error, count, "audit tally not stored and lost: no room to hold it");
        }
    }

    /// Adds `count` back to `key`'s held count; whether there was room to.
    fn hold_back(&self, key: String, event: AuditEvent, count: u64) -> bool {
        let mut held = self.lock();
        let room = held.len() < self.capacity;
        match held.get_mut(&key) {
            Some(entry) => entry.count += count,
            None if room => {
                held.insert(key, Held { event, count });
            }
            None => return false,
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        // Every change under the lock is one insert, removal or addition: a panic elsewhere
        // cannot leave the map half-updated.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
