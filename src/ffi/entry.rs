//! C entry points of the functions that return a lock's row: `pglock_acquire`,
//! `pglock_acquire_wait` and `pglock_get` (declared in sql/lease_functions.sql).
//!
//! pgrx returns a table function's rows one call at a time, setting up a
//! multi-call context and building the row's descriptor from the catalog on
//! every call.  These return their one row in a single call, formed with a
//! descriptor built once per backend: the executor accepts a single result from
//! a set-returning function and stops there.  The functions' logic is plain
//! Rust in `functions::lease` and `functions::wait`.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::fcinfo::pg_getarg;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::functions::{lease, wait, watch};

/// `pglock_acquire(name, owner, lease, data, replace_data, observed_rvn)`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_acquire_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: a call through fmgr of pglock_acquire.
    unsafe { acquire_entry(fcinfo, lease::acquire) }
}

/// `pglock_acquire_wait(name, owner, lease, data, replace_data, wait_timeout)`:
/// the row of `pglock_acquire`, with NULLs where the wait ended with no holder
/// to show.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_acquire_wait_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: a call through fmgr of pglock_acquire_wait.
    unsafe { acquire_entry(fcinfo, wait::acquire_wait) }
}

/// Call `acquire` with the arguments both acquires take (name, owner, lease,
/// data, replace_data, and a last one of its own), and return its row in the
/// order of the columns of pglock_acquire_result.
unsafe fn acquire_entry<Last, Rvn, Owner, Lease, Data>(
    fcinfo: pg_sys::FunctionCallInfo,
    acquire: impl FnOnce(
        Option<&str>,
        Option<&str>,
        Option<Interval>,
        Option<&[u8]>,
        Option<bool>,
        Option<Last>,
    ) -> Result<(bool, Rvn, Owner, Lease, Data), ErrorReport>,
) -> Datum
where
    Last: FromDatum,
    Rvn: IntoDatum,
    Owner: IntoDatum,
    Lease: IntoDatum,
    Data: IntoDatum,
{
    // SAFETY: fmgr passes the arguments the SQL declaration names, in order.
    let row = unsafe {
        acquire(
            pg_getarg(fcinfo, 0),
            pg_getarg(fcinfo, 1),
            pg_getarg(fcinfo, 2),
            pg_getarg(fcinfo, 3),
            pg_getarg(fcinfo, 4),
            pg_getarg(fcinfo, 5),
        )
    };
    let (acquired, rvn, owner, lease, data) = raise_on_error(row);
    // SAFETY: a call through fmgr of a function returning pglock_acquire_result.
    unsafe {
        one_row(
            fcinfo,
            [
                acquired.into_datum(),
                rvn.into_datum(),
                owner.into_datum(),
                lease.into_datum(),
                data.into_datum(),
            ],
        )
    }
}

/// `pglock_get(name)`: one row, or none.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_get_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr passes the one argument the SQL declaration names.
    let row = raise_on_error(unsafe { lease::get(pg_getarg(fcinfo, 0)) });
    // SAFETY: a call through fmgr of a function returning pglock_get_result.
    unsafe { lock_row(fcinfo, row) }
}

/// `pglock_watch(name, rvn, timeout)`: one row, or none, as `pglock_get`.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pglock_watch_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: fmgr passes the three arguments the SQL declaration names.
    let row = raise_on_error(unsafe {
        watch::watch(
            pg_getarg(fcinfo, 0),
            pg_getarg(fcinfo, 1),
            pg_getarg(fcinfo, 2),
        )
    });
    // SAFETY: a call through fmgr of a function returning pglock_get_result.
    unsafe { lock_row(fcinfo, row) }
}

/// Return a lock's row, or none.
///
/// # Safety
/// `fcinfo` is fmgr's call of a set-returning function whose row type is
/// `pglock_get_result`.
unsafe fn lock_row(fcinfo: pg_sys::FunctionCallInfo, row: Option<lease::LockRow>) -> Datum {
    let Some((name, owner, rvn, lease, data, released)) = row else {
        // SAFETY: a call through fmgr.
        return unsafe { no_row(fcinfo) };
    };
    // SAFETY: as for `pglock_acquire_wrapper`.
    unsafe {
        one_row(
            fcinfo,
            [
                name.into_datum(),
                owner.into_datum(),
                rvn.into_datum(),
                lease.into_datum(),
                data.into_datum(),
                released.into_datum(),
            ],
        )
    }
}

/// The version-1 calling convention, which fmgr looks for as `pg_finfo_<name>`.
macro_rules! finfo_v1 {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub extern "C" fn $name() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    )*};
}
finfo_v1!(
    pg_finfo_pglock_acquire_wrapper,
    pg_finfo_pglock_acquire_wait_wrapper,
    pg_finfo_pglock_get_wrapper,
    pg_finfo_pglock_watch_wrapper
);

fn raise_on_error<T>(result: Result<T, ErrorReport>) -> T {
    result.unwrap_or_else(|report| {
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR does not return")
    })
}

/// Return `values` (NULL where `None`) as the call's one row.
unsafe fn one_row<const N: usize>(
    fcinfo: pg_sys::FunctionCallInfo,
    values: [Option<Datum>; N],
) -> Datum {
    let mut datums = [Datum::from(0usize); N];
    let mut nulls = [false; N];
    for (index, value) in values.into_iter().enumerate() {
        match value {
            Some(datum) => datums[index] = datum,
            None => nulls[index] = true,
        }
    }
    // SAFETY: the descriptor has N attributes (the function's row type);
    // the tuple is formed in the call's memory context, which the executor
    // keeps until it has stored the row.
    unsafe {
        let descriptor = result_descriptor(fcinfo, N);
        let tuple = pg_sys::heap_form_tuple(descriptor, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
    }
}

/// Return no row: the set ends at once.
unsafe fn no_row(fcinfo: pg_sys::FunctionCallInfo) -> Datum {
    // SAFETY: a set-returning function is always called with a ReturnSetInfo.
    unsafe {
        let info = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
        (*info).isDone = pg_sys::ExprDoneCond::ExprEndResult;
        (*fcinfo).isnull = true;
    }
    Datum::from(0usize)
}

/// The row type of the function being called, copied (and blessed, which a
/// declaration with an anonymous row type would need) once per backend and
/// function, after checking it has the `columns` the entry point fills.  The
/// check is not made again: pglock's row types belong to the role that
/// installed it (a superuser), and one that alters them in a live backend's
/// life is outside the trust model, as one that redefines the functions is.
unsafe fn result_descriptor(fcinfo: pg_sys::FunctionCallInfo, columns: usize) -> pg_sys::TupleDesc {
    thread_local! {
        static DESCRIPTORS: RefCell<HashMap<Oid, usize>> = RefCell::new(HashMap::new());
    }
    // SAFETY: flinfo is set for every fmgr call.
    let function = unsafe { (*(*fcinfo).flinfo).fn_oid };
    if let Some(descriptor) = DESCRIPTORS.with(|cache| cache.borrow().get(&function).copied()) {
        return descriptor as pg_sys::TupleDesc;
    }
    // SAFETY: get_call_result_type reads the function's declaration; the copy
    // lives in TopMemoryContext, for the backend's life, like the cache entry.
    let descriptor = unsafe {
        let mut built: pg_sys::TupleDesc = std::ptr::null_mut();
        let class = pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut built);
        if class != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE || built.is_null() {
            pgrx::error!("pglock: the function's result is not a row");
        }
        // The row is formed from exactly `columns` values: a row type altered to
        // another width (ALTER TYPE by its owner) must not be filled from them.
        let declared = (*built).natts as usize;
        if declared != columns {
            pgrx::error!("pglock: the function's row type has {declared} columns, not {columns}");
        }
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let kept = pg_sys::BlessTupleDesc(pg_sys::CreateTupleDescCopy(built));
        pg_sys::MemoryContextSwitchTo(old);
        kept
    };
    DESCRIPTORS.with(|cache| cache.borrow_mut().insert(function, descriptor as usize));
    descriptor
}
