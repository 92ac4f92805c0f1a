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
use crate::steps::{acquire, AcquireOutcome, AcquireRequest};
use crate::store::Store;

/// What a waiting caller knows about the holder it is waiting out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The holder's RVN when first seen.
    pub rvn: i64,
    /// When that RVN was first seen.
    pub since: Duration,
    /// The holder's lease: how long the RVN must stand still.
    pub holder_lease: Duration,
}

impl Watch {
    /// Start or go on watching after a refusal that showed the holder at `rvn`:
    /// the same RVN keeps its start; any other RVN (a heartbeat, a new holder)
    /// starts a new wait.
    pub fn after_refusal(
        watch: Option<Watch>,
        rvn: i64,
        holder_lease: Duration,
        now: Duration,
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

    /// When the RVN will have stood still for the holder's whole lease.
    pub fn takeover_at(&self) -> Duration {
        self.since.saturating_add(self.holder_lease)
    }

    /// The RVN to present as `observed_rvn`, once it stood still for the lease.
    pub fn observed_rvn(&self, now: Duration) -> Option<i64> {
        (now >= self.takeover_at()).then_some(self.rvn)
    }

    /// When to try again: after one `poll`, at the moment the lease runs out (at
    /// once if it ran out meanwhile), or at the deadline, whichever comes first.
    pub fn next_attempt(
        &self,
        now: Duration,
        poll: Duration,
        deadline: Option<Duration>,
    ) -> Duration {
        let mut wake = (now + poll).min(self.takeover_at().max(now));
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
/// held (the outcome shows the holder, `watch` what was seen of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOutcome {
    pub outcome: AcquireOutcome,
    pub watch: Option<Watch>,
}

/// Acquire `request` (its `observed_rvn` is ignored: the wait supplies it) in
/// `backend`, the caller's store and clock, waiting until `deadline` (`None`: no deadline).  `watch` carries what an
/// earlier wait saw, so a wait can be resumed across transactions; its lease is
/// refreshed from the first refusal.
pub fn acquire_wait(
    backend: &mut (impl Store + Clock),
    request: &AcquireRequest<'_>,
    deadline: Option<Duration>,
    mut watch: Option<Watch>,
) -> Result<WaitOutcome, ProtocolError> {
    loop {
        let now = backend.now();
        let attempt = AcquireRequest {
            observed_rvn: watch.and_then(|watch| watch.observed_rvn(now)),
            ..*request
        };
        let outcome = acquire(backend, &attempt)?;
        if outcome.acquired {
            return Ok(WaitOutcome {
                outcome,
                watch: None,
            });
        }
        let now = backend.now();
        let current = Watch::after_refusal(watch, outcome.rvn, outcome.lease.as_duration(), now);
        watch = Some(current);
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(WaitOutcome { outcome, watch });
        }
        let poll = server_poll(current.holder_lease);
        backend.sleep_until(current.next_attempt(now, poll, deadline));
    }
}
