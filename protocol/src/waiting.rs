//! Waiting for a lock: the one waiting loop, written once as a state machine
//! ([`Wait`]) that the server and the client drive.
//!
//! A waiter that finds a lock held watches the holder's RVN ([`Watch`]) on a
//! monotonic clock and asks again now and then: a release or a new holder shows
//! at the next attempt, a heartbeat moves the RVN and restarts the watch.  Once
//! the same RVN has stood still for the holder's whole lease, the next attempt
//! presents it as `observed_rvn` and takes the lock over.  Where the server
//! watched the lock itself, its observation starts the watch earlier (at the
//! holder's last write): a waiter that comes late to a dead holder's lock takes
//! it at once instead of watching a whole lease again.
//!
//! The machine answers one question, [`Wait::next`]: attempt (which lock, with
//! which observed RVN), sleep until a time (or a wake-up, where the server has
//! them), or give up.  The driver performs the attempt and reports what it saw
//! ([`Wait::refused`]).  Time is an elapsed [`Duration`] since an origin the
//! driver chooses, so the same machine serves the server (a backend's monotonic
//! clock, carried across the committing procedure's transactions as numbers) and
//! the client (tokio's clock).  [`acquire_wait`] is the driver for a [`Store`].

use std::time::Duration;

use crate::error::ProtocolError;
use crate::steps::{attempt, AcquireOutcome, AcquireRequest, Attempt, Attempted};
use crate::store::{Fields, Queue, Store};

/// What a waiting caller knows about the holder it is waiting out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    /// The holder's RVN when first seen.
    pub rvn: i64,
    /// Since when that RVN has stood still, as far as anyone who told this
    /// waiter knows: its first sight of it, or the server's, if earlier.
    pub since: Duration,
    /// The holder's lease: how long the RVN must stand still.
    pub holder_lease: Duration,
    /// This RVN was presented as `observed_rvn` and refused all the same: the
    /// holder is another role, whose lock only the server's observation may
    /// give away.  Attempts go on at the poll, not at once.
    pub presented: bool,
}

/// What a refused attempt showed of the lock's holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub rvn: i64,
    pub lease: Duration,
    /// How long the server has seen this RVN stand still, where it can tell.
    pub stood_still: Option<Duration>,
}

impl Seen {
    /// What `holder`, a lock as the store read it, shows a waiter.
    pub fn of(holder: &crate::lock::Lock, stood_still: Option<Duration>) -> Seen {
        Seen {
            rvn: holder.rvn,
            lease: holder.lease.as_duration(),
            stood_still,
        }
    }
}

impl Watch {
    /// Start or go on watching after a refusal that showed `seen` at `now`
    /// (`presented`: the attempt offered an RVN as `observed_rvn`): the same RVN
    /// keeps its start; any other RVN (a heartbeat, a new holder) starts a new
    /// wait, at `now` or when the server saw it written, whichever is earlier.
    pub fn after_refusal(
        watch: Option<Watch>,
        seen: Seen,
        now: Duration,
        presented: Option<i64>,
    ) -> Watch {
        let server_since = seen
            .stood_still
            .map_or(now, |still| now.saturating_sub(still));
        let since = match watch {
            // The same RVN: the same write, so the same lease (a watch resumed from
            // an earlier transaction learns the lease here).
            Some(watch) if watch.rvn == seen.rvn => watch.since.min(server_since),
            _ => server_since,
        };
        Watch {
            rvn: seen.rvn,
            since,
            holder_lease: seen.lease,
            presented: presented == Some(seen.rvn),
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

/// The server polls every tenth of the holder's lease, between 10 ms and 100 ms.
/// Where the server wakes its waiters (pglock preloaded), a poll is only the
/// safety net for a wake-up missed; elsewhere it is how a release is noticed.
pub const MIN_SERVER_POLL: Duration = Duration::from_millis(10);
pub const MAX_SERVER_POLL: Duration = Duration::from_millis(100);

pub fn server_poll(holder_lease: Duration) -> Duration {
    (holder_lease / 10).clamp(MIN_SERVER_POLL, MAX_SERVER_POLL)
}

/// A monotonic clock and a way to wait on it.
pub trait Clock {
    /// Time elapsed since this clock's origin.
    fn now(&mut self) -> Duration;
    /// Wait until `wake`, or less if woken up (the server wakes its waiters when
    /// a lock they wait for changes): the machine is asked again either way.
    fn sleep_until(&mut self, wake: Duration);
}

/// What a waiter does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Attempt the lock `target` (an index into the wait's names), presenting
    /// `observed_rvn`, reading the holder's data if `holder_data` says so.
    Attempt {
        target: usize,
        observed_rvn: Option<i64>,
        holder_data: Fields,
    },
    /// Nothing to try before `until`: sleep until then, or until woken.
    Sleep { until: Duration },
    /// The deadline passed with every lock still held: the wait is over.
    TimedOut,
}

/// A waiting acquire of one lock, or of any one of several (a semaphore's
/// slots), until a deadline.
///
/// It goes in passes: each pass attempts every lock in order, first to last,
/// then sleeps until the earliest lock is due again (a poll, or the moment a
/// holder's lease runs out by the watch) or the deadline.  The pass that begins
/// at or after the deadline is the last.  Where the server keeps a queue of
/// waiters, a waiter attempts nothing while others wait ahead of it: it sleeps
/// until it is first (the server wakes it) or the deadline, where its last
/// pass looks once, to show the holder.
#[derive(Debug, Clone)]
pub struct Wait {
    watches: Vec<Option<Watch>>,
    deadline: Option<Duration>,
    poll: Poll,
    /// Holder data for the last pass's refusal (a lock waited for, shown at the
    /// end); polls never read it.
    final_read: Fields,
    /// The next lock to attempt in the pass under way, if one is.
    in_pass: Option<usize>,
    last_pass: bool,
    /// The observed RVN the attempt under way presented.
    presented: Option<i64>,
}

impl Wait {
    /// A wait for `locks` locks (attempted in index order) until `deadline`
    /// (`None`: none; one already passed: a single pass), resuming what earlier
    /// waits saw of each (`watches`, one per lock, or empty).
    pub fn new(
        locks: usize,
        deadline: Option<Duration>,
        watches: Vec<Option<Watch>>,
        final_read: Fields,
    ) -> Wait {
        let mut watches = watches;
        watches.resize(locks, None);
        Wait {
            watches,
            deadline,
            poll: Poll::Server,
            final_read,
            in_pass: None,
            last_pass: false,
            presented: None,
        }
    }

    /// Poll every `poll` instead of at the server's pace: a client, which
    /// pays a round trip per attempt, chooses its own.
    pub fn polling_every(mut self, poll: Duration) -> Wait {
        self.poll = Poll::Every(poll);
        self
    }

    /// What to do at `now`.  `queued_ahead`: someone else waits ahead of this
    /// waiter in the server's queue (always false where there is none).
    pub fn next(&mut self, now: Duration, queued_ahead: bool) -> Next {
        if self.watches.is_empty() {
            return Next::TimedOut;
        }
        if self.in_pass.is_none() {
            self.last_pass = self.deadline.is_some_and(|deadline| now >= deadline);
            // Behind others it only sleeps, until it is first; its last pass
            // still looks, to show the holder (an attempt never jumps the queue).
            if queued_ahead && !self.last_pass {
                return Next::Sleep {
                    until: self.bounded(now + self.poll.of(Duration::MAX)),
                };
            }
            self.in_pass = Some(0);
        }
        let target = self.in_pass.unwrap_or(0);
        if target >= self.watches.len() {
            self.in_pass = None;
            if self.last_pass {
                return Next::TimedOut;
            }
            return Next::Sleep {
                until: self.wake_after_pass(now),
            };
        }
        self.presented = self.watches[target].and_then(|watch| watch.observed_rvn(now));
        let holder_data = if self.last_pass && self.watches.len() == 1 {
            self.final_read
        } else {
            Fields::WithoutData
        };
        Next::Attempt {
            target,
            observed_rvn: self.presented,
            holder_data,
        }
    }

    /// The attempt [`Wait::next`] asked for was refused at `now`, showing `seen`
    /// (`None`: no holder to show, e.g. a lock being created by a transaction
    /// that has not committed).
    pub fn refused(&mut self, now: Duration, seen: Option<Seen>) {
        let target = self.in_pass.unwrap_or(0);
        if let (Some(seen), Some(watch)) = (seen, self.watches.get_mut(target)) {
            *watch = Some(Watch::after_refusal(*watch, seen, now, self.presented));
        }
        self.in_pass = Some(target + 1);
    }

    /// What the wait saw of each lock, to resume it later.
    pub fn watches(&self) -> &[Option<Watch>] {
        &self.watches
    }

    /// When the next pass is due after one that took nothing: the earliest of
    /// the locks' next attempts.
    fn wake_after_pass(&self, now: Duration) -> Duration {
        self.watches
            .iter()
            .map(|watch| match watch {
                Some(watch) => watch.next_attempt(now, self.poll.of(watch.holder_lease), None),
                // Not seen held (being created by an open transaction, or held
                // for waiters queued ahead): soon.
                None => now + self.poll.of(Duration::ZERO),
            })
            .min()
            .map_or(now, |wake| self.bounded(wake.max(now)))
    }

    fn bounded(&self, wake: Duration) -> Duration {
        self.deadline.map_or(wake, |deadline| wake.min(deadline))
    }
}

/// How often a wait polls a lock held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    /// At [`server_poll`] of the holder's lease.
    Server,
    Every(Duration),
}

impl Poll {
    fn of(self, holder_lease: Duration) -> Duration {
        match self {
            Poll::Server => server_poll(holder_lease),
            Poll::Every(poll) => poll,
        }
    }
}

/// A wait ended: the lock was taken, or the deadline passed with the lock still
/// held (`outcome` shows the holder, `watch` what was seen of it).  `outcome` is
/// `None` if there was no holder to show at the end: the lock was being created
/// by a transaction that had not committed, or it was free but reserved for the
/// waiters queued ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitOutcome {
    pub outcome: Option<AcquireOutcome>,
    pub watch: Option<Watch>,
}

/// How a driven wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitEnded {
    /// Lock `target` taken.
    Taken {
        target: usize,
        outcome: AcquireOutcome,
    },
    /// Every lock stayed held; the last refusal, if it showed a holder.
    TimedOut { last: Option<AcquireOutcome> },
}

/// Drive `wait` in `backend` (the caller's store and clock): `request_for(target,
/// observed_rvn)` is the acquire of each of its locks, `queue` the server's
/// queue the wait stands in.  Attempts read no data unless the machine asks, and
/// never queue for the name's lock: a lock another transaction is writing counts
/// as held, so the deadline holds whatever the others do.
pub fn drive<'r>(
    backend: &mut (impl Store + Clock),
    wait: &mut Wait,
    queue: Queue<'_>,
    request_for: impl Fn(usize, Option<i64>) -> AcquireRequest<'r>,
) -> Result<WaitEnded, ProtocolError> {
    let caller = backend.caller();
    let mut last = None;
    loop {
        let now = backend.now();
        let queued_ahead = backend.queued_ahead(queue);
        match wait.next(now, queued_ahead) {
            Next::Attempt {
                target,
                observed_rvn,
                holder_data,
            } => {
                let request = request_for(target, observed_rvn);
                let how = Attempt {
                    wait_for_name: false,
                    holder_data,
                };
                let attempted = attempt(backend, &request, how)?;
                if let Attempted::Done(outcome) = &attempted {
                    if outcome.acquired {
                        return Ok(WaitEnded::Taken {
                            target,
                            outcome: outcome.clone(),
                        });
                    }
                }
                let seen = match &attempted {
                    Attempted::Done(refused) => Some(Seen {
                        rvn: refused.rvn,
                        lease: refused.lease.as_duration(),
                        stood_still: backend.stood_still(request.name, refused.rvn),
                    }),
                    Attempted::NameBusy { current } | Attempted::Queued { current } => {
                        current.as_ref().map(|lock| {
                            let stood_still = backend.stood_still(request.name, lock.rvn);
                            Seen::of(lock, stood_still)
                        })
                    }
                };
                last = attempted.outcome(caller);
                let now = backend.now();
                wait.refused(now, seen);
            }
            Next::Sleep { until } => backend.sleep_until(until),
            Next::TimedOut => return Ok(WaitEnded::TimedOut { last }),
        }
    }
}

/// Acquire `request` (its `observed_rvn` is ignored: the wait supplies it) in
/// `backend`, waiting until `deadline` (`None`: no deadline) in the queue of its
/// lock.  `watch` carries what an earlier wait saw, so a wait can be resumed
/// across transactions; its lease is refreshed from the first refusal.  The
/// last attempt, at the deadline, reads the holder's data if `final_read` asks.
pub fn acquire_wait(
    backend: &mut (impl Store + Clock),
    request: &AcquireRequest<'_>,
    deadline: Option<Duration>,
    watch: Option<Watch>,
    final_read: Fields,
) -> Result<WaitOutcome, ProtocolError> {
    let mut wait = Wait::new(1, deadline, vec![watch], final_read);
    let ended = drive(
        backend,
        &mut wait,
        Queue::Lock(request.name),
        |_, observed_rvn| AcquireRequest {
            observed_rvn,
            ..*request
        },
    )?;
    Ok(match ended {
        WaitEnded::Taken { outcome, .. } => WaitOutcome {
            outcome: Some(outcome),
            watch: None,
        },
        WaitEnded::TimedOut { last } => WaitOutcome {
            outcome: last,
            watch: wait.watches()[0],
        },
    })
}
