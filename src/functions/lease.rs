//! The lease functions: acquire, heartbeat, release (one or all of an owner's),
//! get, and the operators' forced release and counters.
//!
//! A function that runs a protocol step is a wrapper that raises what its body
//! ends with; the body's `?` turns each error into the ERROR (`SqlError`),
//! located at that `?`.

use std::sync::atomic::Ordering;

use pglock_protocol::steps::{self, HeartbeatRequest, ReleaseRequest};
use pglock_protocol::{Fields, Queue, Store};
use pgrx::fcinfo::pg_getarg;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, Datum};
use pgrx::prelude::*;

use super::rows::{self, AcquireArguments, AcquireRow, LockRow};
use super::{acquire_request, count, count_acquire, count_many};
use crate::error::{raise, PglockError, SqlError};
use crate::input;
use crate::session;
use crate::shared_memory;
use crate::store::{Access, Backend};
use crate::waiters::Kind;

/// `pglock_acquire(name, owner, lease, data, replace_data, observed_rvn)`'s C
/// entry point (declared in sql/lease_functions.sql).
///
/// # Safety
/// Called by fmgr only, for that declaration.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_acquire_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: as the caller guarantees.
    unsafe { rows::acquire_entry(fcinfo, "observed_rvn", acquire) }
}
rows::finfo_v1!(pg_finfo_pglock_acquire_wrapper);

/// `pglock_acquire`: the caller's new lock, or the holder's.
fn acquire(arguments: AcquireArguments<'_, i64>) -> Result<AcquireRow, SqlError> {
    session::refuse_if_read_only(c"pglock_acquire");
    let request = acquire_request(&arguments, arguments.last)?;
    let mut backend = Backend::for_current_user(Access::Write)?;
    let outcome = steps::acquire(&mut backend, &request)?;
    count_acquire(outcome.as_ref());
    Ok(outcome.into())
}

#[pg_extern(volatile, parallel_unsafe)]
fn pglock_heartbeat(
    name: Option<&str>,
    owner: Option<&str>,
    rvn: Option<i64>,
    data: default!(Option<&[u8]>, "NULL"),
    replace_data: default!(Option<bool>, false),
    lease: default!(Option<Interval>, "NULL"),
) -> Result<i64, ErrorReport> {
    Ok(heartbeat(name, owner, rvn, data, replace_data, lease)?)
}

fn heartbeat(
    name: Option<&str>,
    owner: Option<&str>,
    rvn: Option<i64>,
    data: Option<&[u8]>,
    replace_data: Option<bool>,
    lease: Option<Interval>,
) -> Result<i64, SqlError> {
    session::refuse_if_read_only(c"pglock_heartbeat");
    let request = HeartbeatRequest {
        name: input::label("name", name)?,
        owner: input::label("owner", owner)?,
        rvn: input::rvn("rvn", rvn)?,
        data: input::data(data)?,
        replace_data: input::flag("replace_data", replace_data)?,
        lease: input::optional_lease("lease", lease)?,
    };
    let renewed = steps::heartbeat(&mut Backend::for_current_user(Access::Write)?, &request);
    count(|c| match renewed {
        Ok(_) => &c.heartbeats,
        Err(_) => &c.failed_heartbeats,
    });
    Ok(renewed?)
}

#[pg_extern(volatile, parallel_unsafe)]
fn pglock_release(
    name: Option<&str>,
    owner: Option<&str>,
    rvn: Option<i64>,
    keep: default!(Option<bool>, false),
    data: default!(Option<&[u8]>, "NULL"),
) -> Result<bool, ErrorReport> {
    Ok(release(name, owner, rvn, keep, data)?)
}

fn release(
    name: Option<&str>,
    owner: Option<&str>,
    rvn: Option<i64>,
    keep: Option<bool>,
    data: Option<&[u8]>,
) -> Result<bool, SqlError> {
    session::refuse_if_read_only(c"pglock_release");
    let request = ReleaseRequest {
        name: input::label("name", name)?,
        owner: input::label("owner", owner)?,
        rvn: input::rvn("rvn", rvn)?,
        keep: input::flag("keep", keep)?,
        data: input::data(data)?,
    };
    let released = steps::release(&mut Backend::for_current_user(Access::Write)?, &request)?;
    if released {
        count(|c| &c.released);
    }
    Ok(released)
}

#[pg_extern(volatile, parallel_unsafe)]
fn pglock_release_all(
    owner: Option<&str>,
    keep: default!(Option<bool>, false),
) -> Result<i64, ErrorReport> {
    session::refuse_if_read_only(c"pglock_release_all");
    let owner = input::label("owner", owner)?;
    let keep = input::flag("keep", keep)?;
    let released = steps::release_all(&mut Backend::for_current_user(Access::Write)?, owner, keep);
    count_many(|c| &c.released, released as u64);
    Ok(released)
}

/// An operator's way out: delete the lock `name` whoever holds it (its holder
/// role may have been dropped).  For `pglock_admin` and superusers.
#[pg_extern(volatile, parallel_unsafe)]
fn pglock_force_release(name: Option<&str>) -> Result<bool, ErrorReport> {
    session::refuse_if_read_only(c"pglock_force_release");
    let name = input::label("name", name)?;
    let released = steps::force_release(&mut Backend::for_current_user(Access::Write)?, name);
    if released {
        count(|c| &c.force_released);
    }
    Ok(released)
}

/// The counters since the server started, and who waits now; only with pglock
/// preloaded.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pglock_stats() -> Result<
    TableIterator<
        'static,
        (
            name!(acquired, i64),
            name!(taken_over, i64),
            name!(refused, i64),
            name!(heartbeats, i64),
            name!(failed_heartbeats, i64),
            name!(released, i64),
            name!(force_released, i64),
            name!(waits, i64),
            name!(handoffs, i64),
            name!(wait_seconds, f64),
            name!(waiting, i64),
            name!(observations_forgotten, i64),
        ),
    >,
    ErrorReport,
> {
    let shared = shared_memory::get().ok_or(PglockError::NotPreloaded)?;
    let counters = shared.counters;
    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as i64;
    Ok(TableIterator::once((
        read(&counters.acquired),
        read(&counters.taken_over),
        read(&counters.refused),
        read(&counters.heartbeats),
        read(&counters.failed_heartbeats),
        read(&counters.released),
        read(&counters.force_released),
        read(&counters.waits),
        read(&counters.handoffs),
        counters.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
        shared.waiters.waiting() as i64,
        shared.observations.forgotten() as i64,
    )))
}

/// Whether the server preloaded pglock (`shared_preload_libraries`): its waits
/// then wake at once and queue in arrival order, it watches leases itself, and
/// it counts (`pglock_stats`).  Without, all works, waits poll.
#[pg_extern(stable, parallel_safe)]
fn pglock_preloaded() -> bool {
    shared_memory::get().is_some()
}

/// `pglock_get(name)`'s C entry point: one row, or none.
///
/// # Safety
/// Called by fmgr only, for the declaration in sql/lease_functions.sql.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_get_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: as the caller guarantees; the one argument is checked by name.
    let name = unsafe {
        rows::check_arguments(fcinfo, &["name"]);
        pg_getarg(fcinfo, 0)
    };
    let row = match get(name) {
        Ok(row) => row,
        Err(error) => raise(error),
    };
    // SAFETY: a set-returning function returning pglock_get_result.
    unsafe { rows::one_row_or_none(fcinfo, row) }
}
rows::finfo_v1!(pg_finfo_pglock_get_wrapper);

/// `pglock_get`: the lock as it is now, its data only for the holder's own role.
fn get(name: Option<&str>) -> Result<Option<LockRow>, SqlError> {
    let name = input::label("name", name)?;
    let mut backend = Backend::for_current_user(Access::Read)?;
    Ok(lock_row(&mut backend, name))
}

/// The lock `name` as `pglock_get` shows it to the caller.
pub(super) fn lock_row(backend: &mut Backend, name: &str) -> Option<LockRow> {
    let caller = backend.caller_role();
    backend
        .read(name, Fields::WithData)
        .map(|lock| LockRow::of(name, &lock, caller))
}

/// Internal functions live in pglock's own schema (created by sql/schema.sql).
#[pg_schema]
pub mod pglock {
    use super::*;

    /// How many sessions of this server wait for the lock `name` of this
    /// database (for the view `pglock_locks`).
    #[pg_extern(volatile, parallel_safe)]
    pub fn waiters(name: Option<&str>) -> Result<i32, ErrorReport> {
        let name = input::label("name", name)?;
        let Some(shared) = shared_memory::get() else {
            return Ok(0);
        };
        let backend = Backend::for_current_user(Access::Read)?;
        let place = backend.place(Kind::Lock, Queue::Lock(name));
        Ok(i32::try_from(shared.waiters.count(place)).unwrap_or(i32::MAX))
    }

    /// A statement that wrote `pglock.locks` without pglock's functions (a
    /// superuser's DML, a restore's COPY) just ended: the server can no longer
    /// say since when any lock stood still, so it counts from now.
    #[pg_trigger]
    pub fn unseen_writes<'a>(
        _trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
        if let Some(shared) = shared_memory::get() {
            shared.observations.unseen_writes(crate::clock::now());
        }
        Ok(None)
    }
}
