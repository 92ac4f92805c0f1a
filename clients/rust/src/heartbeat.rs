//! When a held lock is renewed, retried, and declared lost: the timing rule of
//! the crate docs, section ["When a lock is lost"](crate#when-a-lock-is-lost).
//! The renewer (`renewer.rs`) applies it to each lock.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::ClientConfig;

/// The heartbeat schedule of a client's locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    lease: Duration,
    period: Duration,
    retry: Duration,
}

impl Timing {
    /// The schedule of a validated configuration.
    pub fn new(config: &ClientConfig) -> Self {
        Self {
            lease: config.lease(),
            period: config.heartbeat_period(),
            retry: config.poll_interval().min(config.heartbeat_period()),
        }
    }

    /// How soon a failed heartbeat is retried; also the longest wait between two
    /// attempts to reconnect.
    pub fn retry(&self) -> Duration {
        self.retry
    }

    /// How often a lock is renewed.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How far ahead of its time a lock may be renewed, to share a call with
    /// locks due now: half a period. Renewing early only moves its deadline
    /// sooner from a later start, so it never shortens the lock's safety.
    pub fn early(&self) -> Duration {
        self.period / 2
    }

    /// How long before the lease could run out a silent lock is declared lost.
    pub fn margin(&self) -> Duration {
        self.period.min(self.lease / 4)
    }

    /// When a lock last renewed at `renewed` is lost unless renewed again.
    pub fn lost_at(&self, renewed: Instant) -> Instant {
        renewed + self.lease - self.margin()
    }

    /// When a heartbeat sent at `sent` is abandoned, for a lock (or the latest
    /// of a batch's locks) lost at `lost_at`.
    pub fn give_up_at(&self, sent: Instant, lost_at: Instant) -> Instant {
        (sent + self.period).min(lost_at)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The timing of a valid configuration with these lease and period.
    pub(crate) fn timing(lease_ms: u64, period_ms: u64) -> Timing {
        let config = ClientConfig::new(
            "worker",
            Duration::from_millis(lease_ms),
            Duration::from_millis(period_ms),
        );
        config.validate().expect("a valid configuration");
        Timing::new(&config)
    }

    #[test]
    fn a_short_period_leaves_one_period_of_margin() {
        let t = timing(20_000, 2_000);
        let renewed = Instant::now();
        assert_eq!(t.margin(), Duration::from_secs(2));
        assert_eq!(t.lost_at(renewed), renewed + Duration::from_secs(18));
    }

    #[test]
    fn a_long_period_leaves_a_quarter_lease_of_margin() {
        let t = timing(20_000, 10_000);
        let renewed = Instant::now();
        assert_eq!(t.margin(), Duration::from_secs(5));
        assert_eq!(t.lost_at(renewed), renewed + Duration::from_secs(15));
    }

    #[test]
    fn lost_always_comes_before_the_lease_and_after_the_first_heartbeat() {
        for (lease, period) in [(1_000, 1), (1_000, 250), (1_000, 251), (1_000, 500), (7, 3)] {
            let t = timing(lease, period);
            let renewed = Instant::now();
            let lost_at = t.lost_at(renewed);
            assert!(lost_at < renewed + t.lease, "{lease}/{period}");
            let first = renewed + t.period;
            assert!(lost_at - first >= t.lease / 4, "{lease}/{period}");
        }
    }

    #[test]
    fn an_attempt_is_abandoned_after_a_period_or_at_the_deadline() {
        let t = timing(1_000, 200);
        let renewed = Instant::now();
        let lost_at = t.lost_at(renewed);
        let early = renewed + Duration::from_millis(200);
        assert_eq!(t.give_up_at(early, lost_at), early + t.period);
        let late = renewed + Duration::from_millis(700);
        assert_eq!(t.give_up_at(late, lost_at), lost_at);
    }

    #[test]
    fn retries_at_the_poll_interval_but_at_least_once_a_period() {
        let config = ClientConfig::new("w", Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(Timing::new(&config).retry, Duration::from_millis(500));
        let slow_poll = config.with_poll_interval(Duration::from_secs(5));
        assert_eq!(Timing::new(&slow_poll).retry, Duration::from_secs(1));
    }
}
