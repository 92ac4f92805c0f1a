//! The waiting acquire: the caller's half of the lease protocol, run in the server.
//!
//! A caller that finds a lock held remembers the holder's RVN and waits the
//! holder's lease on a monotonic clock ([`Watch`]).  Meanwhile it polls: a release
//! or a new holder is noticed within one poll, a heartbeat restarts the watch.
//! If the RVN stood still for the whole lease, the next attempt presents it as
//! `observed_rvn` and takes the lock over.  Between attempts the backend sleeps on
//! its latch, so cancel, `statement_timeout` and termination end the wait at once;
//! no row lock or per-name lock is held while it sleeps.

use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::Interval;

use crate::error::PglockError;
use crate::protocol::{self, AcquireOutcome, AcquireRequest};

/// What a waiting caller knows about the holder it is waiting out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The holder's RVN when first seen.
    pub rvn: i64,
    /// When that RVN was first seen.
    pub since: Instant,
    /// The holder's lease: how long the RVN must stand still.
    pub holder_lease: Duration,
}

/// Polls are a tenth of the holder's lease, between 10 ms and 100 ms: a release is
/// noticed well within the lease, and a poll (one index lookup) stays cheap.
const MIN_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(100);

impl Watch {
    /// Start or go on watching after a refusal that showed the holder at `rvn`:
    /// the same RVN keeps its start; any other RVN (a heartbeat, a new holder)
    /// starts a new wait.
    pub fn after_refusal(
        watch: Option<Watch>,
        rvn: i64,
        holder_lease: Duration,
        now: Instant,
    ) -> Watch {
        match watch {
            // The same RVN: the same write, so the same lease (a watch resumed from
            // an earlier transaction learns the lease here).
            Some(watch) if watch.rvn == rvn => Watch {
                holder_lease,
                ..watch
            },
            _ => Watch {
                rvn,
                since: now,
                holder_lease,
            },
        }
    }

    /// The RVN to present as `observed_rvn`, once it stood still for the lease.
    pub fn observed_rvn(&self, now: Instant) -> Option<i64> {
        (now.saturating_duration_since(self.since) >= self.holder_lease).then_some(self.rvn)
    }

    /// When to try again: after one poll, at the moment the lease runs out, or at
    /// the deadline, whichever comes first.
    pub fn next_attempt(&self, now: Instant, deadline: Option<Instant>) -> Instant {
        let poll = (self.holder_lease / 10).clamp(MIN_POLL, MAX_POLL);
        let mut wake = now + poll;
        if let Some(lease_out) = self.since.checked_add(self.holder_lease) {
            wake = wake.min(lease_out.max(now));
        }
        if let Some(deadline) = deadline {
            wake = wake.min(deadline);
        }
        wake
    }
}

/// A wait ended: the lock was taken, or the deadline passed with the lock still
/// held (the outcome shows the holder, `watch` what was seen of it).
pub struct WaitOutcome {
    pub outcome: AcquireOutcome,
    pub watch: Option<Watch>,
}

/// Acquire `request` (its `observed_rvn` is ignored: the wait supplies it),
/// waiting until `deadline` (`None`: no deadline).  `watch` carries what an
/// earlier wait saw, so a wait can be resumed across transactions; its lease is
/// refreshed from the first refusal.
pub fn acquire_wait(
    request: &AcquireRequest<'_>,
    deadline: Option<Instant>,
    mut watch: Option<Watch>,
) -> Result<WaitOutcome, PglockError> {
    loop {
        let attempt = AcquireRequest {
            observed_rvn: watch.and_then(|watch| watch.observed_rvn(Instant::now())),
            ..*request
        };
        let outcome = protocol::acquire(&attempt)?;
        if outcome.acquired {
            return Ok(WaitOutcome {
                outcome,
                watch: None,
            });
        }
        let now = Instant::now();
        let current = Watch::after_refusal(watch, outcome.rvn, duration(outcome.lease), now);
        watch = Some(current);
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(WaitOutcome { outcome, watch });
        }
        sleep_until(current.next_attempt(now, deadline));
    }
}

/// Readings of a monotonic clock as plain numbers (microseconds since this
/// backend first asked), so that a wait resumed in a later transaction of the same
/// session goes on timing with the monotonic clock, not the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn get() -> MonotonicClock {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        MonotonicClock {
            origin: *ORIGIN.get_or_init(Instant::now),
        }
    }

    pub fn reading(&self, instant: Instant) -> i64 {
        i64::try_from(instant.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(i64::MAX)
    }

    /// The instant of a reading.  A reading this clock cannot have made (from the
    /// future, or negative) is taken as now or as the origin: a caller passing
    /// made-up readings can only do what `observed_rvn` already allows.
    pub fn instant(&self, reading: i64) -> Instant {
        let micros = u64::try_from(reading).unwrap_or(0);
        self.origin
            .checked_add(Duration::from_micros(micros))
            .map_or_else(Instant::now, |instant| instant.min(Instant::now()))
    }
}

/// A non-negative interval as a duration (months count as 30 days, as in leases).
pub fn duration(interval: Interval) -> Duration {
    Duration::from_micros(u64::try_from(interval.as_micros().max(0)).unwrap_or(u64::MAX))
}

/// Sleep on the backend's latch until `wake`, serving interrupts (cancel,
/// `statement_timeout`, termination) as they arrive.
fn sleep_until(wake: Instant) {
    loop {
        pg_sys::check_for_interrupts!();
        let now = Instant::now();
        if now >= wake {
            return;
        }
        let millis = (wake - now).as_millis().clamp(1, 60_000) as std::ffi::c_long;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(2);

    #[test]
    fn monotonic_readings_round_trip_and_never_lie_about_the_future() {
        let clock = MonotonicClock::get();
        let now = Instant::now();
        let reading = clock.reading(now);
        assert_eq!(clock.reading(clock.instant(reading)), reading);
        let future = clock.instant(i64::MAX);
        assert!(
            future <= Instant::now(),
            "a reading from the future counts as now"
        );
        assert_eq!(clock.instant(-5), clock.origin);
    }

    #[test]
    fn the_same_rvn_keeps_its_start_and_a_new_one_restarts_the_wait() {
        let start = Instant::now();
        let first = Watch::after_refusal(None, 7, LEASE, start);
        let later = start + Duration::from_millis(500);
        assert_eq!(Watch::after_refusal(Some(first), 7, LEASE, later), first);
        let renewed = Watch::after_refusal(Some(first), 8, LEASE, later);
        assert_eq!((renewed.rvn, renewed.since), (8, later));
    }

    #[test]
    fn the_rvn_is_presented_only_after_standing_still_for_the_holders_lease() {
        let start = Instant::now();
        let watch = Watch::after_refusal(None, 7, LEASE, start);
        assert_eq!(watch.observed_rvn(start), None);
        assert_eq!(
            watch.observed_rvn(start + LEASE - Duration::from_micros(1)),
            None
        );
        assert_eq!(watch.observed_rvn(start + LEASE), Some(7));
    }

    #[test]
    fn attempts_come_every_poll_at_lease_end_and_at_the_deadline() {
        let start = Instant::now();
        let watch = Watch::after_refusal(None, 7, LEASE, start);
        // A 2 s lease polls every 100 ms (the cap).
        assert_eq!(watch.next_attempt(start, None), start + MAX_POLL);
        // Close to the lease's end, the attempt comes exactly at it.
        let near_end = start + LEASE - Duration::from_millis(30);
        assert_eq!(watch.next_attempt(near_end, None), start + LEASE);
        // A deadline before either wins.
        let deadline = start + Duration::from_millis(20);
        assert_eq!(watch.next_attempt(start, Some(deadline)), deadline);
        // A short lease polls at the 10 ms floor.
        let short = Watch::after_refusal(None, 7, Duration::from_millis(50), start);
        assert_eq!(short.next_attempt(start, None), start + MIN_POLL);
    }
}
