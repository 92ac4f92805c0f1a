//! The waiting acquire: `pglock_acquire_wait`, and the step that the procedure
//! `pglock_acquire_wait_committing` (sql/waiting.sql) repeats between commits.

use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{count_acquire, or_raise};
use crate::error::PglockError;
use crate::input;
use crate::protocol::{AcquireOutcome, AcquireRequest};
use crate::waiting::{self, Watch};

/// How long one step of the committing procedure may wait: the longest its
/// snapshot holds back vacuum.
const STEP: Duration = Duration::from_secs(1);

fn acquire_request<'a>(
    name: Option<&'a str>,
    owner: Option<&'a str>,
    lease: Option<Interval>,
    data: Option<&'a [u8]>,
    replace_data: Option<bool>,
) -> Result<AcquireRequest<'a>, PglockError> {
    Ok(AcquireRequest {
        name: input::label("name", name)?,
        owner: input::label("owner", owner)?,
        lease: input::lease("lease", lease)?,
        data: input::data(data)?,
        replace_data: input::flag("replace_data", replace_data)?,
        observed_rvn: None,
    })
}

/// A wait only ends well if each attempt sees the latest committed lock.
fn require_read_committed() -> Result<(), PglockError> {
    let level = unsafe { pg_sys::XactIsoLevel };
    if level >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(PglockError::WaitNeedsReadCommitted);
    }
    Ok(())
}

fn after(start: Instant, wait: Option<Duration>) -> Option<Instant> {
    wait.and_then(|wait| start.checked_add(wait))
}

fn row(outcome: AcquireOutcome) -> (bool, i64, String, Interval, Option<Vec<u8>>) {
    (
        outcome.acquired,
        outcome.rvn,
        outcome.owner,
        outcome.lease,
        outcome.data,
    )
}

// pgrx reads the result columns from the signature, so the row type stays inline.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn pglock_acquire_wait(
    name: Option<&str>,
    owner: Option<&str>,
    lease: default!(Option<Interval>, "'20 seconds'"),
    data: default!(Option<&[u8]>, "NULL"),
    replace_data: default!(Option<bool>, false),
    wait_timeout: default!(Option<Interval>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(acquired, bool),
        name!(rvn, i64),
        name!(owner, String),
        name!(lease, Interval),
        name!(data, Option<Vec<u8>>),
    ),
> {
    let start = Instant::now();
    let (request, wait) = or_raise((|| {
        let request = acquire_request(name, owner, lease, data, replace_data)?;
        let wait = input::wait_timeout("wait_timeout", wait_timeout)?;
        require_read_committed()?;
        Ok((request, wait))
    })());
    let ended = or_raise(waiting::acquire_wait(&request, after(start, wait), None));
    count_acquire(&ended.outcome);
    TableIterator::once(row(ended.outcome))
}

/// Internal functions live in pglock's own schema (created by sql/schema.sql).
#[pg_schema]
pub mod pglock {
    use super::*;

    /// One step of `pglock_acquire_wait_committing`: wait at most [`STEP`] (less if
    /// `wait_timeout` runs out first), resuming the watch of `watched_rvn`, seen
    /// standing still for `watched_for` by earlier steps.  `timed_out` says the whole
    /// wait is over; `watched_for` is how long the holder's RVN has now stood still.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[pg_extern(volatile, parallel_unsafe, security_definer)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn acquire_wait_step(
        name: Option<&str>,
        owner: Option<&str>,
        lease: Option<Interval>,
        data: Option<&[u8]>,
        replace_data: Option<bool>,
        wait_timeout: Option<Interval>,
        waited: Option<Interval>,
        watched_rvn: Option<i64>,
        watched_for: Option<Interval>,
    ) -> TableIterator<
        'static,
        (
            name!(acquired, bool),
            name!(rvn, i64),
            name!(owner, String),
            name!(lease, Interval),
            name!(data, Option<Vec<u8>>),
            name!(timed_out, bool),
            name!(watched_for, Option<Interval>),
        ),
    > {
        let start = Instant::now();
        let (request, wait) = or_raise((|| {
            let request = acquire_request(name, owner, lease, data, replace_data)?;
            let wait = input::wait_timeout("wait_timeout", wait_timeout)?;
            require_read_committed()?;
            Ok((request, wait))
        })());
        let waited = waited.map(waiting::duration).unwrap_or_default();
        let remaining = wait.map(|wait| wait.saturating_sub(waited));
        let resumed = match (watched_rvn, watched_for) {
            (Some(rvn), Some(watched_for)) => Some(Watch {
                rvn,
                since: start
                    .checked_sub(waiting::duration(watched_for))
                    .unwrap_or(start),
                // Learnt from the first refusal of this step.
                holder_lease: Duration::MAX,
            }),
            _ => None,
        };
        let step_end = remaining.map_or(STEP, |remaining| remaining.min(STEP));
        let ended = or_raise(waiting::acquire_wait(
            &request,
            after(start, Some(step_end)),
            resumed,
        ));
        let timed_out = !ended.outcome.acquired
            && after(start, remaining).is_some_and(|deadline| Instant::now() >= deadline);
        if ended.outcome.acquired || timed_out {
            count_acquire(&ended.outcome);
        }
        let watched_for = ended.watch.map(|watch| {
            let micros = i64::try_from(watch.since.elapsed().as_micros()).unwrap_or(i64::MAX);
            Interval::from_micros(micros)
        });
        let (acquired, rvn, owner, lease, data) = row(ended.outcome);
        TableIterator::once((acquired, rvn, owner, lease, data, timed_out, watched_for))
    }
}
