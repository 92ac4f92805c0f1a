//! Semaphores: `pglock_acquire_slot` takes one of a semaphore's slots, each an
//! ordinary lock that the other functions treat like any other.

use std::time::Duration;

use pglock_protocol::semaphore::{self, Slot, SlotRequest};
use pglock_protocol::Queue;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::{count, count_wait, deadline_after, refuse_transaction_snapshot, seat_for};
use crate::error::SqlError;
use crate::input;
use crate::store::{Access, Backend};
use crate::waiters::Kind;
use crate::{clock, session};

/// Takes a free slot of semaphore `name` (of `slots`, by this caller's count),
/// lowest first; with a `wait_timeout` above zero it waits for one as
/// `pglock_acquire_wait` does for a lock.  `acquired = false` with NULLs when
/// every slot stayed held.
// pgrx reads the result columns from the signature, so the row type stays inline.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn pglock_acquire_slot(
    name: Option<&str>,
    owner: Option<&str>,
    slots: Option<i32>,
    lease: default!(Option<Interval>, "'20 seconds'"),
    data: default!(Option<&[u8]>, "NULL"),
    wait_timeout: default!(Option<Interval>, "'0'"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(acquired, bool),
            name!(slot_name, Option<String>),
            name!(rvn, Option<i64>),
        ),
    >,
    ErrorReport,
> {
    let slot = acquire_slot(name, owner, slots, lease, data, wait_timeout)?;
    Ok(TableIterator::once(match slot {
        Some(slot) => (true, Some(slot.slot_name), Some(slot.rvn)),
        None => (false, None, None),
    }))
}

fn acquire_slot(
    name: Option<&str>,
    owner: Option<&str>,
    slots: Option<i32>,
    lease: Option<Interval>,
    data: Option<&[u8]>,
    wait_timeout: Option<Interval>,
) -> Result<Option<Slot>, SqlError> {
    let start = clock::now();
    session::refuse_if_read_only(c"pglock_acquire_slot");
    let request = SlotRequest {
        name: input::semaphore_name("name", name)?,
        owner: input::label("owner", owner)?,
        slots: input::slots("slots", slots)?,
        lease: input::lease("lease", lease)?,
        data: input::data(data)?,
    };
    // Without a wait, one pass over the slots, each an acquire: any isolation
    // level will do, as for pglock_acquire.
    let wait = input::wait_timeout("wait_timeout", wait_timeout)?;
    if wait != Some(Duration::ZERO) {
        refuse_transaction_snapshot()?;
    }
    let deadline = deadline_after(start, wait);
    let mut backend = Backend::for_current_user(Access::Write)?;
    let queue = Queue::Slots(request.name);
    let seat = seat_for(&backend, Kind::Slots, queue, start, deadline, false, None);
    let slot = semaphore::acquire_slot(&mut backend, &request, deadline)?;
    drop(seat);
    count_wait(backend.slept, start, slot.is_some());
    count(|c| match &slot {
        Some(slot) if slot.taken_over => &c.taken_over,
        Some(_) => &c.acquired,
        None => &c.refused,
    });
    Ok(slot)
}
