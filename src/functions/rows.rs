//! What the functions that return a lock's row share (`pglock_acquire`,
//! `pglock_acquire_wait`, `pglock_get` and `pglock_watch`, declared in
//! sql/lease_functions.sql, their C entry points beside their bodies): their
//! arguments and rows, and returning a row in one call.
//!
//! pgrx returns a table function's rows one call at a time, setting up a
//! multi-call context and building the row's descriptor from the catalog on
//! every call.  These return their one row in a single call, formed with a
//! descriptor built once per backend: the executor accepts a single result from
//! a set-returning function and stops there.  Arguments and rows are named
//! structs, checked once per backend and function against the names the SQL
//! declaration gives, so two columns of one type cannot trade places.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};

use pglock_protocol::{AcquireOutcome, Lock, RoleId};
use pgrx::fcinfo::pg_getarg;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::error::{bug, raise, SqlError};
use crate::interval::interval_of;

/// The arguments both acquires take, in the order they are declared; `last`
/// is the one of their own (`observed_rvn`, `wait_timeout`).
pub(crate) struct AcquireArguments<'a, Last> {
    pub name: Option<&'a str>,
    pub owner: Option<&'a str>,
    pub lease: Option<Interval>,
    pub data: Option<&'a [u8]>,
    pub replace_data: Option<bool>,
    pub last: Option<Last>,
}

impl<Last: FromDatum> AcquireArguments<'_, Last> {
    /// The arguments of this call, `last` named `last_name`.
    ///
    /// # Safety
    /// `fcinfo` is fmgr's call of an acquire declared with these six arguments.
    unsafe fn of_call(fcinfo: pg_sys::FunctionCallInfo, last_name: &str) -> Self {
        // SAFETY: as the caller guarantees; the positions are checked by name.
        unsafe {
            check_arguments(
                fcinfo,
                &["name", "owner", "lease", "data", "replace_data", last_name],
            );
            AcquireArguments {
                name: pg_getarg(fcinfo, 0),
                owner: pg_getarg(fcinfo, 1),
                lease: pg_getarg(fcinfo, 2),
                data: pg_getarg(fcinfo, 3),
                replace_data: pg_getarg(fcinfo, 4),
                last: pg_getarg(fcinfo, 5),
            }
        }
    }
}

/// The row every acquire returns (`pglock_acquire_result`), with NULLs where
/// it was refused with no holder to show.
pub(crate) struct AcquireRow {
    pub acquired: bool,
    pub rvn: Option<i64>,
    pub owner: Option<String>,
    pub lease: Option<Interval>,
    pub data: Option<Vec<u8>>,
}

impl From<Option<AcquireOutcome>> for AcquireRow {
    fn from(outcome: Option<AcquireOutcome>) -> AcquireRow {
        match outcome {
            Some(outcome) => AcquireRow {
                acquired: outcome.acquired,
                rvn: Some(outcome.rvn),
                owner: Some(outcome.owner),
                lease: Some(interval_of(&outcome.lease)),
                data: outcome.data,
            },
            None => AcquireRow {
                acquired: false,
                rvn: None,
                owner: None,
                lease: None,
                data: None,
            },
        }
    }
}

/// The row `pglock_get` and `pglock_watch` return (`pglock_get_result`).
pub(crate) struct LockRow {
    pub name: String,
    pub owner: String,
    pub rvn: i64,
    pub lease: Interval,
    pub data: Option<Vec<u8>>,
    pub released: bool,
}

impl LockRow {
    /// `lock`, named `name`, as `caller` may see it: its data only for the
    /// holder's own role.
    pub fn of(name: &str, lock: &Lock, caller: RoleId) -> LockRow {
        LockRow {
            name: name.to_owned(),
            owner: lock.owner.clone(),
            rvn: lock.rvn,
            lease: interval_of(&lock.lease),
            data: lock.data_for(caller).map(<[u8]>::to_vec),
            released: lock.released,
        }
    }
}

/// A row type's values, in the order of its attributes, which are named
/// `COLUMNS`.
pub(super) trait ResultRow<const N: usize> {
    const COLUMNS: [&'static str; N];
    fn into_values(self) -> [Option<Datum>; N];
}

impl ResultRow<5> for AcquireRow {
    const COLUMNS: [&'static str; 5] = ["acquired", "rvn", "owner", "lease", "data"];
    fn into_values(self) -> [Option<Datum>; 5] {
        [
            self.acquired.into_datum(),
            self.rvn.into_datum(),
            self.owner.into_datum(),
            self.lease.into_datum(),
            self.data.into_datum(),
        ]
    }
}

impl ResultRow<6> for LockRow {
    const COLUMNS: [&'static str; 6] = ["name", "owner", "rvn", "lease", "data", "released"];
    fn into_values(self) -> [Option<Datum>; 6] {
        [
            self.name.into_datum(),
            self.owner.into_datum(),
            self.rvn.into_datum(),
            self.lease.into_datum(),
            self.data.into_datum(),
            self.released.into_datum(),
        ]
    }
}

/// The version-1 calling convention, which fmgr looks for as `pg_finfo_<name>`
/// beside each C entry point `<name>`.
macro_rules! finfo_v1 {
    ($name:ident) => {
        #[no_mangle]
        pub extern "C" fn $name() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record =
                pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}
pub(super) use finfo_v1;

/// An acquire's C entry point: its arguments, `last` named `last_name`, given
/// to `acquire`, whose row it returns (or whose error it raises).
///
/// # Safety
/// `fcinfo` is fmgr's call of a function declared with an acquire's arguments
/// and returning `pglock_acquire_result`.
pub(super) unsafe fn acquire_entry<Last: FromDatum>(
    fcinfo: pg_sys::FunctionCallInfo,
    last_name: &str,
    acquire: impl FnOnce(AcquireArguments<'_, Last>) -> Result<AcquireRow, SqlError>,
) -> Datum {
    // SAFETY: as the caller guarantees.
    let arguments = unsafe { AcquireArguments::of_call(fcinfo, last_name) };
    let row = match acquire(arguments) {
        Ok(row) => row,
        Err(error) => raise(error),
    };
    // SAFETY: as the caller guarantees.
    unsafe { one_row(fcinfo, row) }
}

/// Return `row`, or no row.
///
/// # Safety
/// `fcinfo` is fmgr's call of a set-returning function whose row type has the
/// attributes `R::COLUMNS`.
pub(super) unsafe fn one_row_or_none<const N: usize, R: ResultRow<N>>(
    fcinfo: pg_sys::FunctionCallInfo,
    row: Option<R>,
) -> Datum {
    match row {
        // SAFETY: as the caller guarantees.
        Some(row) => unsafe { one_row(fcinfo, row) },
        // SAFETY: a set-returning function is always called with a ReturnSetInfo.
        None => unsafe {
            let info = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            (*info).isDone = pg_sys::ExprDoneCond::ExprEndResult;
            (*fcinfo).isnull = true;
            Datum::from(0usize)
        },
    }
}

/// Return `row` (NULL where a value is `None`) as the call's one row.
///
/// # Safety
/// `fcinfo` is fmgr's call of a function whose row type has the attributes
/// `R::COLUMNS`.
unsafe fn one_row<const N: usize, R: ResultRow<N>>(
    fcinfo: pg_sys::FunctionCallInfo,
    row: R,
) -> Datum {
    let mut datums = [Datum::from(0usize); N];
    let mut nulls = [false; N];
    for (index, value) in row.into_values().into_iter().enumerate() {
        match value {
            Some(datum) => datums[index] = datum,
            None => nulls[index] = true,
        }
    }
    // SAFETY: the descriptor has the N attributes of R (checked by name); the
    // tuple is formed in the call's memory context, which the executor keeps
    // until it has stored the row.
    unsafe {
        let descriptor = result_descriptor(fcinfo, &R::COLUMNS);
        let tuple = pg_sys::heap_form_tuple(descriptor, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
    }
}

/// A row descriptor kept for the backend's life (in TopMemoryContext).
#[derive(Clone, Copy)]
struct KeptDescriptor(pg_sys::TupleDesc);

thread_local! {
    /// By function: its row descriptor, once its columns were checked.
    static DESCRIPTORS: RefCell<HashMap<Oid, KeptDescriptor>> = RefCell::new(HashMap::new());
    /// The functions whose argument names were checked.
    static ARGUMENTS_CHECKED: RefCell<Vec<Oid>> = const { RefCell::new(Vec::new()) };
}

/// The row type of the function being called, copied (and blessed, which a
/// declaration with an anonymous row type would need) once per backend and
/// function, after checking its attributes are named `columns`.  The check is
/// not made again: pglock's row types belong to the role that installed it (a
/// superuser), and one that alters them in a live backend's life is outside
/// the trust model, as one that redefines the functions is.
///
/// # Safety
/// `fcinfo` is fmgr's call of a function.
unsafe fn result_descriptor(
    fcinfo: pg_sys::FunctionCallInfo,
    columns: &[&str],
) -> pg_sys::TupleDesc {
    // SAFETY: as the caller guarantees.
    let function = unsafe { called_function(fcinfo) };
    if let Some(kept) = DESCRIPTORS.with(|cache| cache.borrow().get(&function).copied()) {
        return kept.0;
    }
    // SAFETY: get_call_result_type reads the function's declaration; the copy
    // lives in TopMemoryContext, for the backend's life, like the cache entry.
    let descriptor = unsafe {
        let mut built: pg_sys::TupleDesc = std::ptr::null_mut();
        let class = pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut built);
        if class != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE || built.is_null() {
            bug("the function's result is not a row");
        }
        let declared: Vec<String> = pgrx::PgTupleDesc::from_pg_unchecked(built)
            .iter()
            .map(|attribute| attribute.name().to_owned())
            .collect();
        if declared != columns {
            bug(format_args!(
                "the function's row has columns {declared:?}, not {columns:?}"
            ));
        }
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let kept = pg_sys::BlessTupleDesc(pg_sys::CreateTupleDescCopy(built));
        pg_sys::MemoryContextSwitchTo(old);
        kept
    };
    DESCRIPTORS.with(|cache| {
        cache
            .borrow_mut()
            .insert(function, KeptDescriptor(descriptor))
    });
    descriptor
}

/// Check, once per backend and function, that the function being called
/// declares its arguments with the names `expected`, in order: the entry point
/// reads them by position.
///
/// # Safety
/// `fcinfo` is fmgr's call of a function.
pub(super) unsafe fn check_arguments(fcinfo: pg_sys::FunctionCallInfo, expected: &[&str]) {
    // SAFETY: as the caller guarantees.
    let function = unsafe { called_function(fcinfo) };
    if ARGUMENTS_CHECKED.with(|checked| checked.borrow().contains(&function)) {
        return;
    }
    let declared = argument_names(function);
    if declared != expected {
        bug(format_args!(
            "the function's arguments are {declared:?}, not {expected:?}"
        ));
    }
    ARGUMENTS_CHECKED.with(|checked| checked.borrow_mut().push(function));
}

/// The OID of the function fmgr is calling.
///
/// # Safety
/// `fcinfo` is fmgr's call of a function.
unsafe fn called_function(fcinfo: pg_sys::FunctionCallInfo) -> Oid {
    // SAFETY: as the caller guarantees: its flinfo is set.
    unsafe { (*(*fcinfo).flinfo).fn_oid }
}

/// The names `function` declares its arguments with (empty ones unnamed).
fn argument_names(function: Oid) -> Vec<String> {
    // SAFETY: a syscache lookup by OID, the tuple released after its argument
    // names were copied out; get_func_arg_info pallocs the arrays it returns.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::PROCOID as c_int,
            Datum::from(function),
        );
        if tuple.is_null() {
            bug(format_args!("no function {}", function.to_u32()));
        }
        let mut types: *mut Oid = std::ptr::null_mut();
        let mut names: *mut *mut c_char = std::ptr::null_mut();
        let mut modes: *mut c_char = std::ptr::null_mut();
        let count = pg_sys::get_func_arg_info(tuple, &mut types, &mut names, &mut modes);
        let declared = (0..usize::try_from(count).unwrap_or(0))
            .map(|index| {
                let name = if names.is_null() {
                    std::ptr::null_mut()
                } else {
                    *names.add(index)
                };
                if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            })
            .collect();
        pg_sys::ReleaseSysCache(tuple);
        declared
    }
}
