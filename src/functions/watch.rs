//! `pglock_watch`: a follower's wait for a lock to change, without polling from
//! the client (who leads now, a dashboard).

use std::time::Duration;

use pglock_protocol::waiting::{Clock, MAX_SERVER_POLL};
use pglock_protocol::{Fields, Queue, Store};
use pgrx::prelude::*;

use super::lease::lock_row;
use super::rows::LockRow;
use super::{deadline_after, refuse_transaction_snapshot, seat_for};
use crate::error::PglockError;
use crate::input;
use crate::store::{Access, Backend};
use crate::waiters::Kind;
use crate::waiting as clock;

/// How often a watch looks again where writers wake it: only the safety net for
/// a wake-up missed.  Elsewhere (pglock not preloaded, a standby, which replays
/// writes without waking anyone) it looks every [`MAX_SERVER_POLL`].
const POLL_WHEN_WOKEN: Duration = Duration::from_secs(1);

/// `pglock_watch` (its C entry point and row are in `rows`, its declaration in
/// sql/lease_functions.sql): the lock `name` as soon as its RVN is no longer
/// `rvn` (NULL: as soon as the lock exists), or when `timeout` passes (NULL: no
/// limit), as `pglock_get` shows it; no row if there is no such lock then.
pub(super) fn watch(
    name: Option<&str>,
    rvn: Option<i64>,
    timeout: Option<Interval>,
) -> Result<Option<LockRow>, PglockError> {
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
