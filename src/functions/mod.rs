//! The SQL functions: check arguments, run one protocol step, shape the result.
//!
//! Each returns `Result`: `?` raises an error with its SQLSTATE, located at that
//! `?` (see `error`).
//! They run as their caller (SECURITY INVOKER): `current_user` is the role that
//! acquires and holds locks, and callers need EXECUTE (via `pglock_user`), never
//! rights on the table, which the store reaches as its owner.  None is STRICT: a
//! NULL argument gets a 22004 error, not a NULL result.  Those that write (and
//! the fence) raise 25006 at once in a read-only transaction (a hot standby).

// pgrx raises the `ErrorReport` a function returns (an `SqlError` holds one);
// it is large, but it only ever travels on the error path, once per call.
#![allow(clippy::result_large_err)]

mod fence;
mod heartbeat_many;
pub(crate) mod lease;
mod rows;
mod semaphore;
pub mod wait;
mod watch;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use pglock_protocol::{AcquireOutcome, AcquireRequest, Queue};
use pgrx::prelude::Interval;

use self::rows::AcquireArguments;
use crate::clock;
use crate::counters::Counters;
use crate::error::PglockError;
use crate::input;
use crate::session;
use crate::shared_memory;
use crate::store::Backend;
use crate::waiters::{Asking, Kind, Seated};

/// Add one to the operators' counter `pick` chooses, if there are counters
/// (pglock preloaded).
fn count(pick: impl FnOnce(&Counters) -> &AtomicU64) {
    count_many(pick, 1);
}

/// Add `amount` to the counter `pick` chooses, if there are counters.
fn count_many(pick: impl FnOnce(&Counters) -> &AtomicU64, amount: u64) {
    if let Some(shared) = shared_memory::get() {
        shared.counters.add(pick, amount);
    }
}

/// Count how an acquire ended (a waiting acquire counts once, when it ends;
/// `None`: it ended without a holder to show, still refused).
fn count_acquire(outcome: Option<&AcquireOutcome>) {
    count(|c| match outcome.map(|o| (o.acquired, o.taken_over)) {
        Some((true, true)) => &c.taken_over,
        Some((true, false)) => &c.acquired,
        _ => &c.refused,
    });
}

/// The checked arguments of an acquire, as `pglock_acquire` and the waiting
/// acquires share them, with `observed_rvn`.
fn acquire_request<'a, Last>(
    arguments: &AcquireArguments<'a, Last>,
    observed_rvn: Option<i64>,
) -> Result<AcquireRequest<'a>, PglockError> {
    Ok(AcquireRequest {
        name: input::label("name", arguments.name)?,
        owner: input::label("owner", arguments.owner)?,
        lease: input::lease("lease", arguments.lease)?,
        data: input::data(arguments.data)?,
        replace_data: input::flag("replace_data", arguments.replace_data)?,
        observed_rvn: input::optional_rvn("observed_rvn", observed_rvn)?,
    })
}

/// The checked `wait_timeout` of a call that waits (`None`: no limit), checked
/// after the call's other arguments.  A wait only ends well if each attempt
/// sees the latest committed locks, so a transaction snapshot is refused.
fn checked_wait_timeout(wait_timeout: Option<Interval>) -> Result<Option<Duration>, PglockError> {
    let wait = input::wait_timeout("wait_timeout", wait_timeout)?;
    refuse_transaction_snapshot()?;
    Ok(wait)
}

/// Refuses REPEATABLE READ and SERIALIZABLE for a call that waits.
fn refuse_transaction_snapshot() -> Result<(), PglockError> {
    if session::snapshot_per_transaction() {
        return Err(PglockError::WaitNeedsReadCommitted);
    }
    Ok(())
}

/// When a wait of `wait` that began at `start` ends (`None`: never).
fn deadline_after(start: Duration, wait: Option<Duration>) -> Option<Duration> {
    wait.map(|wait| start.saturating_add(wait))
}

/// A place in the server's `queue` for a wait that began at `start` and may
/// last until `deadline`: none without shared memory, nor for a single try (a
/// deadline already passed), which just does not jump the queue.  `resume`: a
/// committing procedure's next step, which keeps the place its last one had.
/// A wait for a lock leaves what it is `asking` for, for a release to hand the
/// lock over.
fn seat_for(
    backend: &Backend,
    kind: Kind,
    queue: Queue<'_>,
    start: Duration,
    deadline: Option<Duration>,
    resume: bool,
    asking: Option<&Asking<'_>>,
) -> Option<Seated> {
    if deadline.is_some_and(|deadline| start >= deadline) {
        return None;
    }
    shared_memory::get()?
        .waiters
        .sit(backend.place(kind, queue), resume, asking)
}

/// [`seat_for`] a wait for the lock `request` asks for, with its claim.
fn seat_asking(
    backend: &Backend,
    request: &AcquireRequest<'_>,
    start: Duration,
    deadline: Option<Duration>,
    resume: bool,
) -> Option<Seated> {
    let asking = Asking {
        owner: request.owner,
        lease: request.lease,
        role: backend.caller_role(),
        data: request.data,
        replace_data: request.replace_data,
    };
    let queue = Queue::Lock(request.name);
    seat_for(
        backend,
        Kind::Lock,
        queue,
        start,
        deadline,
        resume,
        Some(&asking),
    )
}

/// Count a wait that began at `start`, when it ends, if it slept.
fn count_wait(slept: bool, start: Duration, acquired: bool) {
    if let (true, Some(shared)) = (slept, shared_memory::get()) {
        shared
            .counters
            .waited(clock::now().saturating_sub(start), acquired);
    }
}
