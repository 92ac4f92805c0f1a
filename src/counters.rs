//! Counters for operators, in pglock's shared memory, when it is preloaded
//! (`shared_preload_libraries = 'pglock'`).  Without preloading there is no
//! shared memory to keep them in, counting is skipped (`functions::count`) and
//! `pglock_stats` says so.
//!
//! Each counter is one atomic add per call, counted when the call returns: a call
//! whose transaction later rolls back is still counted, as in pg_stat_statements.
//! They start at zero when the server starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Zero is every counter's start, as shared memory comes.
#[repr(C)]
pub struct Counters {
    /// Free (missing or released) locks taken.
    pub acquired: AtomicU64,
    /// Locks taken over from a holder whose RVN stood still.
    pub taken_over: AtomicU64,
    /// Acquires refused because the lock was held.
    pub refused: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Heartbeats that raised because the caller no longer held the lock.
    pub failed_heartbeats: AtomicU64,
    pub released: AtomicU64,
    /// Locks an operator removed with `pglock_force_release`.
    pub force_released: AtomicU64,
    /// Waiting acquires (of a lock or a slot) that had to sleep, when they end;
    /// those that ended with the lock (hand-offs); the time they slept, in µs.
    pub waits: AtomicU64,
    pub handoffs: AtomicU64,
    pub wait_micros: AtomicU64,
}

impl Counters {
    /// Add `amount` to the counter `pick` chooses.
    pub fn add(&self, pick: impl FnOnce(&Counters) -> &AtomicU64, amount: u64) {
        pick(self).fetch_add(amount, Ordering::Relaxed);
    }

    /// A waiting call ended after sleeping for `waited`, with the lock or without.
    pub fn waited(&self, waited: Duration, acquired: bool) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        if acquired {
            self.handoffs.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.wait_micros.fetch_add(micros, Ordering::Relaxed);
    }
}
