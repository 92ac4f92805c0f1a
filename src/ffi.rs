//! Every call into PostgreSQL's C API that Rust cannot check, in one place.
//!
//! Each function here is safe to call from a backend running pglock's SQL
//! functions; each `unsafe` block says why it is sound.  The rest of pglock
//! reaches PostgreSQL through pgrx's safe wrappers (SPI, datums, errors).

use std::ffi::{c_long, CStr};
use std::time::Duration;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

/// The role of the session (`SET ROLE` included), outside any SECURITY DEFINER
/// function on the stack.
pub fn outer_user_id() -> Oid {
    // SAFETY: reads a backend-local variable that is set for the whole session
    // before any SQL function runs.
    unsafe { pg_sys::GetOuterUserId() }
}

/// A role's name, or `None` if there is no such role (it was dropped).
pub fn role_name(role: Oid) -> Option<String> {
    // SAFETY: with `noerr = true` a missing role returns NULL instead of raising;
    // a non-NULL result is a palloc'd NUL-terminated string we only read.
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, valid until the memory context resets.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The database this backend is connected to.
pub fn database_id() -> Oid {
    // SAFETY: set once at connection start-up, before any SQL function runs.
    unsafe { pg_sys::MyDatabaseId }
}

/// Whether the current transaction runs at REPEATABLE READ or SERIALIZABLE.
pub fn snapshot_per_transaction() -> bool {
    // SAFETY: a backend-local integer, set for each transaction before it runs SQL.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Whether the postmaster is loading `shared_preload_libraries` right now.
pub fn preloading_libraries() -> bool {
    // SAFETY: a plain boolean of the process, read in `_PG_init`.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Take an exclusive lock on `tag` for the rest of the transaction, waiting for
/// it like any heavyweight lock (`lock_timeout`, cancel, deadlock detection).
pub fn lock_exclusive(tag: &pg_sys::LOCKTAG) {
    // SAFETY: `tag` is a fully initialised LOCKTAG of a user lock method; a
    // transaction lock (sessionLock = false) is released by the lock manager at
    // transaction end, also on error.
    unsafe {
        pg_sys::LockAcquire(tag, EXCLUSIVE, false, false);
    }
}

/// Give back one [`lock_exclusive`] of `tag` taken by this transaction.
pub fn unlock_exclusive(tag: &pg_sys::LOCKTAG) {
    // SAFETY: as above; releasing a lock held once drops its local count by one.
    unsafe {
        pg_sys::LockRelease(tag, EXCLUSIVE, false);
    }
}

const EXCLUSIVE: pg_sys::LOCKMODE = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;

/// Sleep on the backend's latch for up to `timeout`; a signal (cancel,
/// `statement_timeout`, termination) sets the latch and ends it early.
pub fn sleep_on_latch(timeout: Duration) {
    let millis = timeout.as_millis().clamp(1, 60_000) as c_long;
    // SAFETY: MyLatch is this process's own latch, valid for its whole life;
    // WL_EXIT_ON_PM_DEATH makes the wait end if the postmaster dies.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            millis,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
}

/// An `interval` from its three fields, whatever their signs: PostgreSQL allows
/// mixed signs (`1 mon -29 days`), which `Interval::new` refuses.
pub fn interval(months: i32, days: i32, micros: i64) -> Interval {
    let raw = pg_sys::Interval {
        time: micros,
        day: days,
        month: months,
    };
    // SAFETY: an interval datum is a pointer to a pg_sys::Interval; pgrx copies
    // the struct out of it, and `raw` outlives the call.
    unsafe {
        Interval::from_polymorphic_datum(
            pg_sys::Datum::from(&raw as *const pg_sys::Interval),
            false,
            pg_sys::INTERVALOID,
        )
    }
    .expect("a non-null datum gives an interval")
}
