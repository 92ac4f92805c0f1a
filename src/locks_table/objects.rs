//! The catalog objects of one installation of pglock, found once per backend.

use std::cell::Cell;
use std::ffi::{c_int, CStr};

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::error::bug;

/// The objects of one installation of pglock, as this backend found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objects {
    pub locks: Oid,
    pub primary_key: Oid,
    pub rvn_seq: Oid,
    pub owner: Oid,
    pub secret: Oid,
}

thread_local! {
    static FOUND: Cell<Option<Objects>> = const { Cell::new(None) };
}

impl Objects {
    /// pglock's objects in this database, or `None` if the extension's SQL is
    /// of another version than this library (not yet updated).  Found once and
    /// kept until PostgreSQL invalidates the cached definition of one of them
    /// (a DROP, an owner change, an update script's ALTER), or of every
    /// relation at once.
    pub fn current() -> Option<Objects> {
        if let Some(objects) = FOUND.get() {
            return Some(objects);
        }
        let objects = Objects::find()?;
        FOUND.set(Some(objects));
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        REGISTERED.call_once(|| {
            // SAFETY: registers a plain function for the backend's life; it only
            // reads and clears a thread-local (backends are single-threaded).
            unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0usize)) };
        });
        Some(objects)
    }

    fn find() -> Option<Objects> {
        if installed_version().as_deref() != Some(env!("CARGO_PKG_VERSION")) {
            return None;
        }
        let locks = relation_id(c"locks")?;
        let objects = Objects {
            locks,
            primary_key: relation_id(c"locks_pkey")?,
            rvn_seq: relation_id(c"rvn_seq")?,
            owner: relation_owner(locks)?,
            secret: relation_id(c"name_lock_secret")?,
        };
        objects.check_columns();
        Some(objects)
    }

    fn contains(&self, relid: Oid) -> bool {
        [self.locks, self.primary_key, self.rvn_seq, self.secret].contains(&relid)
    }

    /// The hot path reads and writes tuples column by column: make sure the
    /// table has exactly the columns it was written for.
    fn check_columns(&self) {
        let table = super::LocksTable::open(self, false);
        let checked = super::row::check_columns(&table.descriptor());
        if let Err(difference) = checked {
            bug(format_args!("pglock.locks {difference}"));
        }
    }

    /// The next RVN, as `nextval` draws it from the sequence (checking the
    /// current user's rights on it).
    pub fn next_rvn(&self) -> i64 {
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
                pg_sys::Datum::from(self.rvn_seq),
            )
        };
        value.value() as i64
    }
}

/// Forgets the objects when one of them, or every relation, is invalidated.
extern "C-unwind" fn forget(_arg: Datum, relid: Oid) {
    if FOUND
        .get()
        .is_some_and(|objects| relid == Oid::INVALID || objects.contains(relid))
    {
        FOUND.set(None);
    }
}

/// The version of pglock installed in this database, as `pg_extension` has it.
/// Read-only SPI: pgrx's `Spi::get_one` would assign a transaction id (it
/// treats every statement as a possible write), which a refused acquire must
/// not take, and a standby cannot.
fn installed_version() -> Option<String> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT extversion FROM pg_catalog.pg_extension \
                  WHERE extname OPERATOR(pg_catalog.=) 'pglock'",
                Some(1),
                &[],
            )
            .ok()?
            .first()
            .get_one::<String>()
            .ok()
            .flatten()
    })
}

/// The OID of the relation `pglock.name`, if it exists.
fn relation_id(name: &CStr) -> Option<Oid> {
    // SAFETY: both take NUL-terminated names and, with missing_ok, return
    // InvalidOid instead of raising when nothing matches.
    let relid = unsafe {
        let namespace = pg_sys::get_namespace_oid(c"pglock".as_ptr(), true);
        if namespace == Oid::INVALID {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    };
    (relid != Oid::INVALID).then_some(relid)
}

/// The role that owns the relation `relid`, if it exists.
fn relation_owner(relid: Oid) -> Option<Oid> {
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
