//! The background task that renews a held lock, and the rule that declares it lost.
//!
//! The timing rule is documented in the crate docs, section
//! ["When a lock is lost"](crate#when-a-lock-is-lost).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

use crate::config::ClientConfig;
use crate::connection::{Connection, Failure};
use crate::error::{Error, LostReason};
use crate::lock::Held;

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

    /// How long before the lease could run out a silent lock is declared lost.
    pub fn margin(&self) -> Duration {
        self.period.min(self.lease / 4)
    }

    /// When a lock last renewed at `renewed` is lost unless renewed again.
    pub fn lost_at(&self, renewed: Instant) -> Instant {
        renewed + self.lease - self.margin()
    }

    /// When a heartbeat sent at `sent` is abandoned.
    fn give_up_at(&self, sent: Instant, lost_at: Instant) -> Instant {
        (sent + self.period).min(lost_at)
    }
}

/// Starts renewing `held`, last renewed at `renewed`, until `stop` is cancelled or
/// the lock is lost. A heartbeat in flight when `stop` fires is finished first, so
/// the RVN in `held` is the lock's latest once the task has ended.
pub(crate) fn spawn(
    connection: Arc<Connection>,
    held: Arc<Held>,
    timing: Timing,
    renewed: Instant,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(connection, held, timing, renewed, stop))
}

async fn run(
    connection: Arc<Connection>,
    held: Arc<Held>,
    timing: Timing,
    mut renewed: Instant,
    stop: CancellationToken,
) {
    let mut next = renewed + timing.period;
    let mut last_error = None;
    loop {
        let lost_at = timing.lost_at(renewed);
        if next >= lost_at {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = sleep_until(lost_at) => {
                    held.mark_lost(LostReason::HeartbeatsFailed { last_error });
                    return;
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = sleep_until(next) => {}
        }
        let sent = Instant::now();
        let limit = timing
            .give_up_at(sent, lost_at)
            .saturating_duration_since(sent);
        let (name, owner, rvn) = (held.name(), held.owner(), held.rvn());
        let call = connection.call(Some(limit), "pglock_heartbeat", |sql| async move {
            sql.heartbeat(name, owner, rvn).await
        });
        match call.await {
            Ok(rvn) => {
                held.set_rvn(rvn);
                renewed = sent;
                next = sent + timing.period;
                last_error = None;
            }
            Err(failure) => {
                if let Failure::Call(error) = &failure {
                    if let Some(reason) = lost_reason(error) {
                        held.mark_lost(reason);
                        return;
                    }
                }
                // Connecting failed, or the call did for a passing reason (its
                // connection broke, no reply in time): try again.
                last_error = Some(failure.describe());
                next = Instant::now() + timing.retry;
            }
        }
    }
}

/// The errors that end a lock at once; every other error is retried.
fn lost_reason(error: &Error) -> Option<LostReason> {
    match error.code() {
        Some(code) if *code == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE => {
            Some(LostReason::NotHeld)
        }
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
            Some(LostReason::HeldByOtherRole)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(lease_ms: u64, period_ms: u64) -> Timing {
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
