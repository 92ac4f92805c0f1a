//! The waiting rule: the caller's half of the protocol.
//!
//! A caller that finds a lock held remembers the holder's RVN and when it first
//! saw it, on a monotonic clock ([`Watch`]).  It asks again now and then: a
//! release or a new holder shows at the next attempt, a heartbeat moves the RVN
//! and restarts the watch.  Once the same RVN has stood still for the holder's
//! whole lease, the next attempt presents it as `observed_rvn` and takes the lock
//! over.  Time is an elapsed [`Duration`] since an origin the caller chooses, so
//! the same rule serves the server (a backend's monotonic clock, carried across
//! transactions as numbers) and the client (tokio's clock).

use std::time::Duration;

use crate::error::ProtocolError;
use crate::steps::{attempt, AcquireOutcome, AcquireRequest, Attempt, Attempted};
use crate::store::{Fields, Store};

/// What a waiting caller knows about the holder it is waiting out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The holder's RVN when first seen.
    pub rvn: i64,
    /// When that RVN was first seen.
    pub since: Duration,
    /// The holder's lease: how long the RVN must stand still.
    pub holder_lease: Duration,
    /// This RVN was presented as `observed_rvn` and refused all the same: the
    /// holder is another role whose lease has not run out by the server's clock
    /// yet.  Attempts go on at the poll, not at once.
    pub presented: bool,
}

impl Watch {
    /// Start or go on watching after a refusal that showed the holder at `rvn`
    /// (`presented`: the attempt offered an RVN as `observed_rvn`): the same RVN
    /// keeps its start; any other RVN (a heartbeat, a new holder) starts a new wait.
    pub fn after_refusal(
        watch: Option<Watch>,
        rvn: i64,
        holder_lease: Duration,
        now: Duration,
        presented: Option<i64>,
    ) -> Watch {
        let since = match watch {
            // The same RVN: the same write, so the same lease (a watch resumed from
            // an earlier transaction learns the lease here).
            Some(watch) if watch.rvn == rvn => watch.since,
            _ => now,
        };
        Watch {
            rvn,
            since,
            holder_lease,
            presented: presented == Some(rvn),
        }
    }

    /// When the RVN will have stood still for the holder's whole lease.
    pub fn takeover_at(&self) -> Duration {
        self.since.saturating_add(self.holder_lease)
    }

    /// The RVN to present as `observed_rvn`, once it stood still for the lease.
    pub fn observed_rvn(&self, now: Duration) -> Option<i64> {
        (now >= self.takeover_at()).then_some(self.rvn)
    }

    /// When to try again: after one `poll`, at the moment the lease runs out (at
    /// once if it ran out meanwhile, unless that was already tried), or at the
    /// deadline, whichever comes first.
    pub fn next_attempt(
        &self,
        now: Duration,
        poll: Duration,
        deadline: Option<Duration>,
    ) -> Duration {
        let mut wake = now + poll;
        if !self.presented {
            wake = wake.min(self.takeover_at().max(now));
        }
        if let Some(deadline) = deadline {
            wake = wake.min(deadline);
        }
        wake
    }
}

/// The server polls every tenth of the holder's lease, between 10 ms and 100 ms:
/// a release is noticed well within the lease, and a poll stays cheap.
pub const MIN_SERVER_POLL: Duration = Duration::from_millis(10);
pub const MAX_SERVER_POLL: Duration = Duration::from_millis(100);

pub fn server_poll(holder_lease: Duration) -> Duration {
    (holder_lease / 10).clamp(MIN_SERVER_POLL, MAX_SERVER_POLL)
}

/// A monotonic clock and a way to wait on it.
pub trait Clock {
    /// Time elapsed since this clock's origin.
    fn now(&mut self) -> Duration;
    /// Wait until `wake` (serving interrupts on the way, in the server).
    fn sleep_until(&mut self, wake: Duration);
}

/// A wait ended: the lock was taken, or the deadline passed with the lock still
/// held (`outcome` shows the holder, `watch` what was seen of it).  `outcome` is
/// `None` only if the deadline passed while another transaction was creating
/// the lock and had not committed: there is no holder to show yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOutcome {
    pub outcome: Option<AcquireOutcome>,
    pub watch: Option<Watch>,
}

/// Acquire `request` (its `observed_rvn` is ignored: the wait supplies it) in
/// `backend`, the caller's store and clock, waiting until `deadline` (`None`: no
/// deadline).  `watch` carries what an earlier wait saw, so a wait can be resumed
/// across transactions; its lease is refreshed from the first refusal.
///
/// Polls read no data and never queue for the name's lock: a lock another
/// transaction is writing counts as held, so the deadline holds whatever the
/// others do.  The last attempt, at the deadline, reads the holder's data if
/// `final_read` asks for it.
pub fn acquire_wait(
    backend: &mut (impl Store + Clock),
    request: &AcquireRequest<'_>,
    deadline: Option<Duration>,
    mut watch: Option<Watch>,
    final_read: Fields,
) -> Result<WaitOutcome, ProtocolError> {
    let caller = backend.caller();
    loop {
        let now = backend.now();
        let last = deadline.is_some_and(|deadline| now >= deadline);
        let presented = watch.and_then(|watch| watch.observed_rvn(now));
        let attempt_request = AcquireRequest {
            observed_rvn: presented,
            ..*request
        };
        let how = Attempt {
            wait_for_name: false,
            holder_data: if last {
                final_read
            } else {
                Fields::WithoutData
            },
        };
        let holder = match attempt(backend, &attempt_request, how)? {
            Attempted::Done(outcome) if outcome.acquired => {
                return Ok(WaitOutcome {
                    outcome: Some(outcome),
                    watch: None,
                })
            }
            Attempted::Done(refused) => Some(refused),
            Attempted::NameBusy { current } => {
                current.map(|lock| AcquireOutcome::refused(lock, caller))
            }
        };
        let now = backend.now();
        if let Some(holder) = &holder {
            let lease = holder.lease.as_duration();
            watch = Some(Watch::after_refusal(
                watch, holder.rvn, lease, now, presented,
            ));
        }
        if last {
            return Ok(WaitOutcome {
                outcome: holder,
                watch,
            });
        }
        let poll = watch.map_or(MIN_SERVER_POLL, |watch| server_poll(watch.holder_lease));
        let wake = match watch {
            Some(watch) => watch.next_attempt(now, poll, deadline),
            None => deadline.map_or(now + poll, |deadline| deadline.min(now + poll)),
        };
        backend.sleep_until(wake);
    }
}
