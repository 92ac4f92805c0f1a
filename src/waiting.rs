//! The waiting acquire in the server: the protocol's waiting rule
//! ([`pglock_protocol::waiting`]) on this backend's monotonic clock, sleeping on
//! its latch between attempts, so cancel, `statement_timeout` and termination end
//! a wait at once; no row lock or name lock is held while it sleeps.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pglock_protocol::waiting::Clock;

use crate::ffi;
use crate::store::Backend;

/// Time on this backend's monotonic clock: elapsed since the backend first asked.
/// As plain microseconds it crosses transactions (the committing procedure's
/// steps), and a wall-clock jump between steps cannot shorten a wait.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

pub fn now() -> Duration {
    origin().elapsed()
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

impl Clock for Backend {
    fn now(&mut self) -> Duration {
        now()
    }

    fn sleep_until(&mut self, wake: Duration) {
        loop {
            pgrx::check_for_interrupts!();
            let now = now();
            if now >= wake {
                return;
            }
            ffi::sleep_on_latch(wake - now);
        }
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
}
