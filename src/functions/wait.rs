//! The waiting acquire: `pglock_acquire_wait`, and the step that the procedure
//! `pglock_acquire_wait_committing` (sql/waiting.sql) repeats between commits.

use std::time::Duration;

use pglock_protocol::waiting::{self, Watch};
use pglock_protocol::{AcquireRequest, Fields};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;

use super::rows::{self, AcquireArguments, AcquireRow};
use super::{
    acquire_request, checked_wait_timeout, count_acquire, count_wait, deadline_after, seat_asking,
};
use crate::error::{PglockError, SqlError};
use crate::interval::lease_of;
use crate::store::{Access, Backend};
use crate::{clock, session};

/// How long one step of the committing procedure may wait: the longest its
/// snapshot holds back vacuum.
const STEP: Duration = Duration::from_secs(1);

/// The checked arguments of a waiting acquire (`last`: its `wait_timeout`):
/// the request and the wait.
fn wait_request<'a>(
    arguments: &AcquireArguments<'a, Interval>,
) -> Result<(AcquireRequest<'a>, Option<Duration>), PglockError> {
    let request = acquire_request(arguments, None)?;
    let wait = checked_wait_timeout(arguments.last)?;
    Ok((request, wait))
}

/// `pglock_acquire_wait(name, owner, lease, data, replace_data, wait_timeout)`'s
/// C entry point (declared in sql/lease_functions.sql): the row of
/// `pglock_acquire`, with NULLs where the wait ended with no holder to show.
///
/// # Safety
/// Called by fmgr only, for that declaration.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_acquire_wait_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> Datum {
    // SAFETY: as the caller guarantees.
    unsafe { rows::acquire_entry(fcinfo, "wait_timeout", acquire_wait) }
}
rows::finfo_v1!(pg_finfo_pglock_acquire_wait_wrapper);

/// `pglock_acquire_wait`: the lock taken, or the holder when the wait ended.
fn acquire_wait(arguments: AcquireArguments<'_, Interval>) -> Result<AcquireRow, SqlError> {
    let start = clock::now();
    session::refuse_if_read_only(c"pglock_acquire_wait");
    let (request, wait) = wait_request(&arguments)?;
    let deadline = deadline_after(start, wait);
    let mut backend = Backend::for_current_user(Access::Write)?;
    let seat = seat_asking(&backend, &request, start, deadline, false);
    let ended = waiting::acquire_wait(&mut backend, &request, deadline, None, Fields::WithData)?;
    drop(seat);
    let acquired = ended.outcome.as_ref().is_some_and(|o| o.acquired);
    count_acquire(ended.outcome.as_ref());
    count_wait(backend.slept, start, acquired);
    Ok(ended.outcome.into())
}

/// Internal functions live in pglock's own schema (created by sql/schema.sql).
#[pg_schema]
pub mod pglock {
    use super::*;

    /// One step of `pglock_acquire_wait_committing`: wait at most [`STEP`] (less if
    /// `wait_timeout`, counted from `started`, runs out first), resuming the watch
    /// of `watched_rvn` (first seen at `watched_since`, with lease `watched_lease`).
    /// `started` and `watched_since` are readings of this backend's monotonic clock
    /// (`clock::reading`), so a wall-clock jump between steps cannot shorten a
    /// wait.  `timed_out` says the whole wait is over; the other outputs are what
    /// the next step needs.  Only the procedure may call it: it refuses to start
    /// a wait that the procedure could not commit.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[pg_extern(volatile, parallel_unsafe)]
    pub fn acquire_wait_step(
        name: Option<&str>,
        owner: Option<&str>,
        lease: Option<Interval>,
        data: Option<&[u8]>,
        replace_data: Option<bool>,
        wait_timeout: Option<Interval>,
        started: Option<i64>,
        watched_rvn: Option<i64>,
        watched_since: Option<i64>,
        watched_lease: Option<Interval>,
    ) -> Result<
        TableIterator<
            'static,
            (
                name!(acquired, bool),
                name!(rvn, Option<i64>),
                name!(owner, Option<String>),
                name!(lease, Option<Interval>),
                name!(data, Option<Vec<u8>>),
                name!(timed_out, bool),
                name!(started, i64),
                name!(watched_since, Option<i64>),
            ),
        >,
        ErrorReport,
    > {
        let arguments = AcquireArguments {
            name,
            owner,
            lease,
            data,
            replace_data,
            last: wait_timeout,
        };
        let watched = Watched {
            rvn: watched_rvn,
            since: watched_since,
            lease: watched_lease,
        };
        let ended = step(arguments, started, watched)?;
        let row = ended.row;
        Ok(TableIterator::once((
            row.acquired,
            row.rvn,
            row.owner,
            row.lease,
            row.data,
            ended.timed_out,
            ended.started,
            ended.watched_since,
        )))
    }
}

/// The watch the last step left, as the procedure carries it to the next.
struct Watched {
    rvn: Option<i64>,
    since: Option<i64>,
    lease: Option<Interval>,
}

/// How one step ended (the outputs of `acquire_wait_step`).
struct StepEnded {
    row: AcquireRow,
    timed_out: bool,
    started: i64,
    watched_since: Option<i64>,
}

/// One step of `pglock_acquire_wait_committing` (see `acquire_wait_step`).
fn step(
    arguments: AcquireArguments<'_, Interval>,
    started: Option<i64>,
    watched: Watched,
) -> Result<StepEnded, SqlError> {
    let now = clock::now();
    if !session::caller_can_commit() {
        Err(PglockError::CommittingWaitInTransaction)?;
    }
    session::refuse_if_read_only(c"pglock_acquire_wait_committing");
    let (request, wait) = wait_request(&arguments)?;
    let started_at = started;
    let started = started.map_or(now, clock::time_of);
    let deadline = deadline_after(started, wait);
    let resumed = match (watched.rvn, watched.since) {
        (Some(rvn), Some(since)) => Some(Watch {
            rvn,
            since: clock::time_of(since),
            // Unknown: learnt again from this step's first refusal.
            holder_lease: watched
                .lease
                .map_or(Duration::MAX, |lease| lease_of(lease).as_duration()),
            presented: false,
        }),
        _ => None,
    };
    let step_end = now + STEP;
    let step_deadline = deadline.map_or(step_end, |deadline| deadline.min(step_end));
    // The procedure shows only `acquired` and `rvn`: no step reads the data.
    let mut backend = Backend::for_current_user(Access::Write)?;
    // The place in the queue carries over from step to step; a wait whose
    // whole deadline passed already only tries once, as the function does.
    let seat = seat_asking(&backend, &request, now, deadline, started_at.is_some());
    let ended = waiting::acquire_wait(
        &mut backend,
        &request,
        Some(step_deadline),
        resumed,
        Fields::WithoutData,
    )?;
    let acquired = ended
        .outcome
        .as_ref()
        .is_some_and(|outcome| outcome.acquired);
    let timed_out = !acquired && deadline.is_some_and(|deadline| clock::now() >= deadline);
    match seat {
        Some(seat) if !acquired && !timed_out => seat.keep_between_steps(),
        seat => drop(seat),
    }
    if acquired || timed_out {
        count_acquire(ended.outcome.as_ref());
        count_wait(backend.slept || started_at.is_some(), started, acquired);
    }
    let watched_since = ended.watch.map(|watch| clock::reading(watch.since));
    Ok(StepEnded {
        row: ended.outcome.into(),
        timed_out,
        started: clock::reading(started),
        watched_since,
    })
}
