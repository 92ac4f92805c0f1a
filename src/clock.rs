//! The clock a backend waits by, the system's monotonic clock, and its sleep
//! until a time, on its latch.
//!
//! Time is `CLOCK_MONOTONIC`, which one machine's processes share and which no
//! wall-clock step (an NTP step, a VM resumed, `date -s`) moves: the server's
//! observations of locks in shared memory, each backend's waits and the readings
//! the committing procedure carries between its steps are all on it.  It stops
//! while the machine is suspended, so a holder cut off by a suspended server
//! loses none of its lease.
//!
//! A waiter sleeps on its latch until a time or a wake-up: writers set the latch
//! of the first waiter for a lock after their transaction ends (see `waiters`),
//! and cancel, `statement_timeout` and termination set it too, so a wait ends at
//! once; no row lock or name lock is held while it sleeps.

use std::ffi::c_long;
use std::time::Duration;

use pgrx::pg_sys;

/// The system's monotonic clock now: the time since an origin shared by every
/// process of the machine (its boot).
pub fn now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, and
    // CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// A reading of [`now`] as microseconds, to hand to the next step.
pub fn reading(time: Duration) -> i64 {
    i64::try_from(time.as_micros()).unwrap_or(i64::MAX)
}

/// The time of a reading.  A reading this clock cannot have made (from the
/// future, or negative) counts as now or as the origin: a caller passing made-up
/// readings can only do what `observed_rvn` already allows.
pub fn time_of(reading: i64) -> Duration {
    Duration::from_micros(u64::try_from(reading).unwrap_or(0)).min(now())
}

/// Sleep on the backend's latch for up to `timeout`: a wake-up, a cancel,
/// `statement_timeout` or termination sets the latch and ends it early.  The
/// latch is reset on the way out, so whatever set it is looked at next.
pub fn sleep(timeout: Duration) {
    let millis = timeout.as_millis().clamp(1, 60_000) as c_long;
    let event = wait_event();
    // SAFETY: MyLatch is this process's own latch, valid for its whole life;
    // WL_EXIT_ON_PM_DEATH makes the wait end if the postmaster dies.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            millis,
            event,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
}

/// The wait event a sleeping waiter shows in `pg_stat_activity`: `Extension` /
/// `pglock` on PostgreSQL 17 and later (where extensions may name theirs, with
/// pglock preloaded or not), `Extension` / `Extension` before.
fn wait_event() -> u32 {
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        use std::cell::Cell;
        thread_local! {
            static EVENT: Cell<u32> = const { Cell::new(0) };
        }
        if EVENT.get() == 0 {
            // SAFETY: a NUL-terminated name; the server registers it (once per
            // name, in shared memory) and returns its event, or raises.
            EVENT.set(unsafe { pg_sys::WaitEventExtensionNew(c"pglock".as_ptr()) });
        }
        EVENT.get()
    }
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    {
        pg_sys::PG_WAIT_EXTENSION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_round_trip_and_never_lie_about_the_future() {
        let earlier = reading(now());
        assert_eq!(reading(time_of(earlier)), earlier);
        assert!(
            time_of(i64::MAX) <= now(),
            "a reading from the future counts as now"
        );
        assert_eq!(time_of(-5), Duration::ZERO);
    }

    #[test]
    fn the_clock_never_goes_back() {
        let first = now();
        assert!(now() >= first);
        assert!(first > Duration::ZERO);
    }
}
