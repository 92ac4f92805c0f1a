//! `pglock_watch`: a follower's wait for a lock to change, without polling from
//! the client (who leads now, a dashboard).

use std::time::Duration;

use pglock_protocol::waiting::{Clock, MAX_SERVER_POLL};
use pglock_protocol::{Fields, Queue, Store};
use pgrx::fcinfo::pg_getarg;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;

use super::lease::lock_row;
use super::rows::{self, LockRow};
use super::{deadline_after, refuse_transaction_snapshot, seat_for};
use crate::clock;
use crate::error::{raise, SqlError};
use crate::input;
use crate::store::{Access, Backend};
use crate::waiters::Kind;

/// How often a watch looks again where writers wake it: only the safety net for
/// a wake-up missed.  Elsewhere (pglock not preloaded, a standby, which replays
/// writes without waking anyone) it looks every [`MAX_SERVER_POLL`].
const POLL_WHEN_WOKEN: Duration = Duration::from_secs(1);

/// `pglock_watch(name, rvn, timeout)`'s C entry point: one row, or none, as
/// `pglock_get`.
///
/// # Safety
/// Called by fmgr only, for the declaration in sql/lease_functions.sql.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_watch_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: as the caller guarantees; the arguments are checked by name.
    let row = unsafe {
        rows::check_arguments(fcinfo, &["name", "rvn", "timeout"]);
        watch(
            pg_getarg(fcinfo, 0),
            pg_getarg(fcinfo, 1),
            pg_getarg(fcinfo, 2),
        )
    };
    let row = match row {
        Ok(row) => row,
        Err(error) => raise(error),
    };
    // SAFETY: a set-returning function returning pglock_get_result.
    unsafe { rows::one_row_or_none(fcinfo, row) }
}
rows::finfo_v1!(pg_finfo_pglock_watch_wrapper);

/// `pglock_watch`: the lock `name` as soon as its RVN is no longer
/// `rvn` (NULL: as soon as the lock exists), or when `timeout` passes (NULL: no
/// limit), as `pglock_get` shows it; no row if there is no such lock then.
fn watch(
    name: Option<&str>,
    rvn: Option<i64>,
    timeout: Option<Interval>,
) -> Result<Option<LockRow>, SqlError> {
    let start = clock::now();
    let name = input::label("name", name)?;
    let watched = input::optional_rvn("rvn", rvn)?;
    let wait = input::wait_timeout("timeout", timeout)?;
    refuse_transaction_snapshot()?;
    let deadline = deadline_after(start, wait);
    let mut backend = Backend::for_current_user(Access::Read)?;
    let seat = seat_for(
        &backend,
        Kind::Watch,
        Queue::Lock(name),
        start,
        deadline,
        false,
        None,
    );
    let poll = if seat.is_some() && !crate::session::in_recovery() {
        POLL_WHEN_WOKEN
    } else {
        MAX_SERVER_POLL
    };
    loop {
        let now = backend.now();
        let current = backend.read(name, Fields::WithoutData).map(|lock| lock.rvn);
        let over = deadline.is_some_and(|deadline| now >= deadline);
        if current != watched || over {
            break;
        }
        let wake = deadline.map_or(now + poll, |deadline| deadline.min(now + poll));
        backend.sleep_until(wake);
    }
    drop(seat);
    Ok(lock_row(&mut backend, name))
}
