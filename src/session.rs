//! The backend this call runs in: who it acts as, the transaction it is in, the
//! server it belongs to.  Each function reads or sets backend state through
//! PostgreSQL's C API; each `unsafe` block says why that is sound here.

use std::ffi::{c_int, CStr};

use pgrx::pg_sys::{self, Oid};

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
