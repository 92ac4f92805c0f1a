//! The catalog objects of one installation of pglock, found once per backend.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use super::row::check_columns;
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
    /// How many times the objects were forgotten: objects found while one of
    /// them was invalidated are not kept.
    static FORGOTTEN: Cell<u64> = const { Cell::new(0) };
}

impl Objects {
    /// pglock's objects in this database, or `None` if the extension's SQL is
    /// of another version than this library (not yet updated).  Found once and
    /// kept until PostgreSQL invalidates the cached definition of one of them
    /// (a DROP, an owner change, an update script's ALTER or GRANT on
    /// `pglock.locks`, which every update script makes), or of every relation
    /// at once.
    pub fn current() -> Option<Objects> {
        if let Some(objects) = FOUND.get() {
            return Some(objects);
        }
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        REGISTERED.call_once(|| {
            // SAFETY: registers a plain function for the backend's life; it only
            // reads and writes thread-locals (backends are single-threaded).
            unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0usize)) };
        });
        let forgotten = FORGOTTEN.get();
        let objects = Objects::find()?;
        if FORGOTTEN.get() == forgotten {
            FOUND.set(Some(objects));
        }
        Some(objects)
    }

    fn find() -> Option<Objects> {
        if installed_version().as_deref() != Some(env!("CARGO_PKG_VERSION")) {
            return None;
        }
        let locks = relation_id(c"locks")?;
        // Opening the table takes in the invalidations sent before: its owner
        // and columns are read as they are now.
        let (owner, columns) = open_and_read(locks, |relation| {
            // SAFETY: the relation is open, and so its pg_class row and descriptor.
            let (owner, descriptor) = unsafe {
                (
                    (*(*relation).rd_rel).relowner,
                    pgrx::PgTupleDesc::from_pg_unchecked((*relation).rd_att),
                )
            };
            (owner, check_columns(&descriptor))
        });
        if let Err(difference) = columns {
            bug(format_args!("pglock.locks {difference}"));
        }
        Some(Objects {
            locks,
            primary_key: relation_id(c"locks_pkey")?,
            rvn_seq: relation_id(c"rvn_seq")?,
            owner,
            secret: relation_id(c"name_lock_secret")?,
        })
    }

    fn contains(&self, relid: Oid) -> bool {
        [self.locks, self.primary_key, self.rvn_seq, self.secret].contains(&relid)
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
    let found = FOUND.get();
    if found.is_none_or(|objects| relid == Oid::INVALID || objects.contains(relid)) {
        FOUND.set(None);
        FORGOTTEN.set(FORGOTTEN.get().wrapping_add(1));
    }
}

/// What `read` makes of the table `relid`, open to read for that while.
fn open_and_read<R>(relid: Oid, read: impl FnOnce(pg_sys::Relation) -> R) -> R {
    let mode = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: the OID of an existing table, just looked up; the lock stays to
    // the end of the transaction, as for any reader of the table.
    unsafe {
        let relation = pg_sys::table_open(relid, mode);
        let read = read(relation);
        pg_sys::table_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
        read
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

#[cfg(test)]
mod tests {
    /// A backend keeps the objects it found until one of them is invalidated:
    /// an update script that touched none of them would leave a backend on the
    /// old library serving the new SQL.  Every script from 0.4.0 on writes to
    /// `pglock.locks`' definition (a trigger, a grant, an ALTER TABLE).
    #[test]
    fn every_update_script_invalidates_the_locks_table() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut checked = 0;
        for entry in std::fs::read_dir(folder).expect("sql/ is readable") {
            let path = entry.expect("an entry of sql/").path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(to) = file
                .strip_prefix("pglock--")
                .and_then(|rest| rest.strip_suffix(".sql"))
                .and_then(|versions| versions.split_once("--"))
                .map(|(_, to)| to.to_owned())
            else {
                continue;
            };
            let version: Vec<u32> = to.split('.').map(|part| part.parse().unwrap()).collect();
            if version < vec![0, 4, 0] {
                continue;
            }
            let statements: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                ["ON pglock.locks", "TABLE pglock.locks"]
                    .iter()
                    .any(|statement| statements.contains(statement)),
                "{file} changes nothing of pglock.locks' definition: end it with \
                 `REVOKE ALL ON pglock.locks FROM PUBLIC;` (a no-op that invalidates it)"
            );
            checked += 1;
        }
        assert!(
            checked > 0,
            "no update script to 0.4.0 or later in {folder}"
        );
    }
}
