//! Counters for operators, in shared memory, when pglock is preloaded
//! (`shared_preload_libraries = 'pglock'`).  Without preloading there is no
//! shared memory to keep them in, counting is skipped and `pglock_stats` says so.
//!
//! Each counter is one atomic add per call, counted when the call returns: a call
//! whose transaction later rolls back is still counted, as in pg_stat_statements.
//! They start at zero when the server starts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::atomics::PgAtomic;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory};

use crate::ffi;

#[derive(Default)]
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
}

// SAFETY: plain atomics and no pointers, so the struct is valid at whatever
// address each process maps shared memory, and shared between processes.
unsafe impl PGRXSharedMemory for Counters {}

// SAFETY: the name is unique to pglock in the shared-memory index, and the
// counters are only read after `init` reserved them (see `get`).
static COUNTERS: PgAtomic<Counters> = unsafe { PgAtomic::new(c"pglock_counters") };

/// Set in the postmaster when it loads pglock at start-up; backends inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init`: reserve the counters if the server is starting with
/// pglock in `shared_preload_libraries`.
pub fn init() {
    if ffi::preloading_libraries() {
        pg_shmem_init!(COUNTERS);
        PRELOADED.store(true, Ordering::Relaxed);
    }
}

/// The counters, if pglock was preloaded.
pub fn get() -> Option<&'static Counters> {
    PRELOADED.load(Ordering::Relaxed).then(|| COUNTERS.get())
}

/// Add one to the counter `pick` chooses, if there are counters.
pub fn count(pick: impl FnOnce(&Counters) -> &AtomicU64) {
    add(pick, 1);
}

/// Add `amount` to the counter `pick` chooses, if there are counters.
pub fn add(pick: impl FnOnce(&Counters) -> &AtomicU64, amount: u64) {
    if let Some(counters) = get() {
        pick(counters).fetch_add(amount, Ordering::Relaxed);
    }
}
