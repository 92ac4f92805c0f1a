//! Every call into PostgreSQL's C API that Rust cannot check, in one place.
//!
//! Each function here is safe to call from a backend running pglock's SQL
//! functions; each `unsafe` block says why it is sound.  The rest of pglock
//! reaches PostgreSQL through pgrx's safe wrappers (SPI, datums, errors).

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::ffi::{c_int, CStr};

pub mod entry;
pub mod table;

/// The role whose privileges the current statement runs with: `current_user`
/// (the owner of a SECURITY DEFINER function that called us, `SET ROLE`'s role).
pub fn current_user_id() -> Oid {
    // SAFETY: reads a backend-local variable, always set while SQL runs.
    unsafe { pg_sys::GetUserId() }
}

/// While it lives, this backend acts as `role` in a security-restricted
/// context (as PostgreSQL's own maintenance commands do: no `SET ROLE`, no
/// temporary objects); dropping it, on return or while an error unwinds, gives
/// the caller's role and context back.
pub struct ActingAs {
    user: Oid,
    context: c_int,
}

impl ActingAs {
    pub fn enter(role: Oid) -> ActingAs {
        let mut user = Oid::INVALID;
        let mut context: c_int = 0;
        let restricted =
            (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as c_int;
        // SAFETY: both only read and write backend-local variables; the pair is
        // put back by `drop`, and PostgreSQL also puts it back if the transaction
        // or subtransaction aborts.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(role, context | restricted);
        }
        ActingAs { user, context }
    }
}

impl Drop for ActingAs {
    fn drop(&mut self) {
        // SAFETY: restores the values read in `enter`.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) }
    }
}

/// While it lives, the planner neither chooses sequential scans (as
/// `enable_seqscan = off` does), so pglock's kept plans always look a lock up
/// through the primary key, nor compiles with JIT (a scan of a large table would
/// otherwise cost a compilation), whatever the caller's settings; dropping it
/// puts the caller's settings back.  Setting the variables directly costs
/// nothing, unlike a per-function `SET` clause, which saves and restores every
/// setting per call.
pub struct PlannerSettings {
    seqscan: bool,
    jit: bool,
}

impl PlannerSettings {
    pub fn enter() -> PlannerSettings {
        // SAFETY: backend-local planner variables, read only by the planner, which
        // runs inside this guard's life or after `drop` restored them.
        unsafe {
            let saved = PlannerSettings {
                seqscan: pg_sys::enable_seqscan,
                jit: pg_sys::jit_enabled,
            };
            pg_sys::enable_seqscan = false;
            pg_sys::jit_enabled = false;
            saved
        }
    }
}

impl Drop for PlannerSettings {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            pg_sys::enable_seqscan = self.seqscan;
            pg_sys::jit_enabled = self.jit;
        }
    }
}

/// The OID of the table `schema.name`, if it exists.
pub fn relation_id(schema: &CStr, name: &CStr) -> Option<Oid> {
    // SAFETY: both take NUL-terminated names and, with missing_ok, return
    // InvalidOid instead of raising when nothing matches.
    let relid = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if namespace == Oid::INVALID {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    };
    (relid != Oid::INVALID).then_some(relid)
}

/// The role that owns the relation `relid`, if it exists.
pub fn relation_owner(relid: Oid) -> Option<Oid> {
    // SAFETY: a syscache lookup by OID; the tuple, if any, is a pg_class row
    // that stays valid until ReleaseSysCache, and only its owner is copied out.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as c_int,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return None;
        }
        let class = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class;
        let owner = (*class).relowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}

/// The next value of the sequence `sequence`, as `nextval` draws it (checking
/// the current user's rights on it).
pub fn next_value(sequence: Oid) -> i64 {
    // pgrx's bindings wrap server functions; fmgr needs the C function itself.
    unsafe extern "C-unwind" {
        fn nextval_oid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
    }
    // SAFETY: calls nextval's C implementation (a V1 fmgr function of the
    // server) with the OID of an existing sequence; it raises an ERROR rather
    // than return on failure.
    let value = unsafe {
        pg_sys::DirectFunctionCall1Coll(
            Some(nextval_oid),
            Oid::INVALID,
            pg_sys::Datum::from(sequence),
        )
    };
    value.value() as i64
}

/// Whether the current statement runs inside an explicit transaction block
/// (`BEGIN` ... `COMMIT`, or a procedure's transaction), which may go on after it.
pub fn in_transaction_block() -> bool {
    // SAFETY: reads the backend's transaction state, always set while SQL runs.
    unsafe { pg_sys::IsTransactionBlock() }
}

/// Whether the server is a standby (or still recovering): it writes nothing.
pub fn in_recovery() -> bool {
    // SAFETY: reads shared state the startup process publishes; callable from
    // any backend at any time.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Raise 25006 if the current transaction may not write (a hot standby, or
/// `READ ONLY`), naming `function`.
pub fn refuse_if_read_only(function: &CStr) {
    // SAFETY: a NUL-terminated name that outlives the call; raises or returns.
    unsafe { pg_sys::PreventCommandIfReadOnly(function.as_ptr()) }
}

/// Whether the procedure that called this function may COMMIT: it was called
/// by CALL outside a transaction block (and not from within a function).
pub fn caller_can_commit() -> bool {
    // SAFETY: reads the state of the innermost SPI connection, which is the
    // calling PL/pgSQL procedure's while this function runs.
    unsafe { pg_sys::SPI_inside_nonatomic_context() }
}

/// Make the current transaction's commit wait for its WAL to reach disk,
/// whatever `synchronous_commit` the session set: an acknowledged lock must
/// survive an operating-system crash, and no RVN may be issued twice.
pub fn force_durable_commit() {
    // SAFETY: sets a flag of the current transaction, read at commit.
    unsafe { pg_sys::ForceSyncCommit() }
}

/// A role's name, or `None` if there is no such role (it was dropped).
pub fn role_name(role: Oid) -> Option<String> {
    // SAFETY: with `noerr = true` a missing role returns NULL instead of raising;
    // a non-NULL result is a palloc'd NUL-terminated string we only read.
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated, valid until the memory context resets.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The database this backend is connected to.
pub fn database_id() -> Oid {
    // SAFETY: set once at connection start-up, before any SQL function runs.
    unsafe { pg_sys::MyDatabaseId }
}

/// Whether the current transaction runs at REPEATABLE READ or SERIALIZABLE.
pub fn snapshot_per_transaction() -> bool {
    // SAFETY: a backend-local integer, set for each transaction before it runs SQL.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Whether the postmaster is loading `shared_preload_libraries` right now.
pub fn preloading_libraries() -> bool {
    // SAFETY: a plain boolean of the process, read in `_PG_init`.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// Take an exclusive lock on `tag` for the rest of the transaction, waiting for
/// it like any heavyweight lock (`lock_timeout`, cancel, deadlock detection).
pub fn lock_exclusive(tag: &pg_sys::LOCKTAG) {
    // SAFETY: `tag` is a fully initialised LOCKTAG of a user lock method; a
    // transaction lock (sessionLock = false) is released by the lock manager at
    // transaction end, also on error.
    unsafe {
        pg_sys::LockAcquire(tag, EXCLUSIVE, false, false);
    }
}

/// [`lock_exclusive`] if no other transaction holds `tag`; false instead of waiting.
pub fn try_lock_exclusive(tag: &pg_sys::LOCKTAG) -> bool {
    // SAFETY: as for `lock_exclusive`; with dontWait the call returns
    // LOCKACQUIRE_NOT_AVAIL instead of sleeping.
    let result = unsafe { pg_sys::LockAcquire(tag, EXCLUSIVE, false, true) };
    result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// Give back one [`lock_exclusive`] of `tag` taken by this transaction.
pub fn unlock_exclusive(tag: &pg_sys::LOCKTAG) {
    // SAFETY: as above; releasing a lock held once drops its local count by one.
    unsafe {
        pg_sys::LockRelease(tag, EXCLUSIVE, false);
    }
}

const EXCLUSIVE: pg_sys::LOCKMODE = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;

/// Take a shared lock on `tag` for the rest of the transaction: it conflicts
/// with [`lock_exclusive`] of other transactions, not with other shared locks,
/// and waits like any heavyweight lock (behind exclusive requests already queued).
pub fn lock_shared(tag: &pg_sys::LOCKTAG) {
    // SAFETY: as for `lock_exclusive`, in share mode.
    unsafe {
        pg_sys::LockAcquire(tag, SHARE, false, false);
    }
}

/// Give back one [`lock_shared`] of `tag` taken by this transaction.
pub fn unlock_shared(tag: &pg_sys::LOCKTAG) {
    // SAFETY: as for `unlock_exclusive`.
    unsafe {
        pg_sys::LockRelease(tag, SHARE, false);
    }
}

const SHARE: pg_sys::LOCKMODE = pg_sys::ShareLock as pg_sys::LOCKMODE;

/// An `interval` from its three fields, whatever their signs: PostgreSQL allows
/// mixed signs (`1 mon -29 days`), which `Interval::new` refuses.
pub fn interval(months: i32, days: i32, micros: i64) -> Interval {
    let raw = pg_sys::Interval {
        time: micros,
        day: days,
        month: months,
    };
    // SAFETY: an interval datum is a pointer to a pg_sys::Interval; pgrx copies
    // the struct out of it, and `raw` outlives the call.
    unsafe {
        Interval::from_polymorphic_datum(
            pg_sys::Datum::from(&raw as *const pg_sys::Interval),
            false,
            pg_sys::INTERVALOID,
        )
    }
    .expect("a non-null datum gives an interval")
}
