//! `pglock.locks` through SPI: the one module that holds the table's SQL.
//!
//! Each statement is planned once per backend and kept (`SPI_keepplan`), so a call
//! costs an execution, not a parse and plan.  Every statement is prepared as
//! "mutating": SPI then takes a fresh snapshot for each one, which a read made after
//! waiting for [`lock_name`] needs to see the writer it waited for.  Reads never
//! assign a transaction id, so a refused acquire writes no WAL.
//!
//! All writes draw their new RVN with `nextval` inside the statement, after the
//! per-name lock is held: writes to one name are serialized, so its RVNs only grow.

use std::cell::OnceCell;

use crate::error::internal_error;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

/// One row of `pglock.locks`.
#[derive(Debug, Clone)]
pub struct LockRow {
    pub owner: String,
    pub rvn: i64,
    pub lease: Interval,
    pub data: Option<Vec<u8>>,
    pub released: bool,
    pub holder_role: Oid,
}

/// How a write treats the data already stored with a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChange<'a> {
    Keep,
    Replace(Option<&'a [u8]>),
}

const READ: &str = "\
    SELECT owner, rvn, lease, data, released, holder_role::pg_catalog.oid \
      FROM pglock.locks WHERE name = $1";

const INSERT: &str = "\
    INSERT INTO pglock.locks (name, owner, rvn, lease, data, holder_role) \
    VALUES ($1, $2, pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), $3, $4, $5) \
    ON CONFLICT (name) DO NOTHING \
    RETURNING rvn";

const TAKE_OVER: &str = "\
    UPDATE pglock.locks \
       SET owner = $3, rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), \
           lease = $4, data = CASE WHEN $5 THEN data ELSE $6 END, released = false, \
           holder_role = $7, updated_at = pg_catalog.now() \
     WHERE name = $1 AND rvn = $2 \
    RETURNING rvn, data";

const HEARTBEAT: &str = "\
    UPDATE pglock.locks \
       SET rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), \
           data = CASE WHEN $5 THEN data ELSE $6 END, \
           lease = COALESCE($7, lease), updated_at = pg_catalog.now() \
     WHERE name = $1 AND owner = $2 AND rvn = $3 AND holder_role = $4 AND NOT released \
    RETURNING rvn";

const HELD_BY: &str = "\
    SELECT name, rvn FROM pglock.locks \
     WHERE owner = $1 AND holder_role = $2 AND NOT released";

const RELEASE_DELETE: &str = "\
    DELETE FROM pglock.locks \
     WHERE name = $1 AND owner = $2 AND rvn = $3 AND holder_role = $4 AND NOT released";

const RELEASE_KEEP: &str = "\
    UPDATE pglock.locks \
       SET released = true, rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), \
           data = COALESCE($5, data), updated_at = pg_catalog.now() \
     WHERE name = $1 AND owner = $2 AND rvn = $3 AND holder_role = $4 AND NOT released";

struct Statements {
    read: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
    take_over: OwnedPreparedStatement,
    heartbeat: OwnedPreparedStatement,
    release_delete: OwnedPreparedStatement,
    release_keep: OwnedPreparedStatement,
    held_by: OwnedPreparedStatement,
}

thread_local! {
    static STATEMENTS: OnceCell<Statements> = const { OnceCell::new() };
}

impl Statements {
    fn prepare(client: &SpiClient<'_>) -> Self {
        use pg_sys::{BOOLOID as boolean, BYTEAOID as bytea, INT8OID as int8};
        use pg_sys::{INTERVALOID as interval, OIDOID as oid, TEXTOID as text};
        let keep = |sql: &str, types: &[Oid]| {
            let types: Vec<PgOid> = types.iter().map(|t| PgOid::from_untagged(*t)).collect();
            checked(client.prepare_mut(sql, &types)).keep()
        };
        Statements {
            read: keep(READ, &[text]),
            insert: keep(INSERT, &[text, text, interval, bytea, oid]),
            take_over: keep(
                TAKE_OVER,
                &[text, int8, text, interval, boolean, bytea, oid],
            ),
            heartbeat: keep(
                HEARTBEAT,
                &[text, text, int8, oid, boolean, bytea, interval],
            ),
            release_delete: keep(RELEASE_DELETE, &[text, text, int8, oid]),
            release_keep: keep(RELEASE_KEEP, &[text, text, int8, oid, bytea]),
            held_by: keep(HELD_BY, &[text, oid]),
        }
    }
}

/// Run `f` with an SPI connection and this backend's prepared statements.
fn with_statements<R>(f: impl FnOnce(&SpiClient<'_>, &Statements) -> R) -> R {
    Spi::connect(|client| {
        STATEMENTS.with(|cell| {
            let statements = cell.get_or_init(|| Statements::prepare(client));
            f(client, statements)
        })
    })
}

/// SPI-level failures (not PostgreSQL errors, which propagate as themselves) mean a
/// statement above is wrong: a bug, reported as such.
fn checked<T>(result: SpiResult<T>) -> T {
    result.unwrap_or_else(|error| internal_error(format!("pglock: SPI failed: {error}")))
}

fn column<T: FromDatum + IntoDatum>(table: &SpiTupleTable<'_>, ordinal: usize) -> Option<T> {
    checked(table.get::<T>(ordinal))
}

fn required_column<T: FromDatum + IntoDatum>(table: &SpiTupleTable<'_>, ordinal: usize) -> T {
    column(table, ordinal)
        .unwrap_or_else(|| internal_error(format!("pglock: column {ordinal} of a row is NULL")))
}

/// `(keep existing, replacement)` for the `CASE WHEN $keep THEN data ELSE $new END` in SQL.
fn data_args<'a>(change: DataChange<'a>) -> (bool, Option<&'a [u8]>) {
    match change {
        DataChange::Keep => (true, None),
        DataChange::Replace(data) => (false, data),
    }
}

/// The role the caller acts as: its `current_role` outside this SECURITY DEFINER
/// function (the function runs as the extension's owner).
pub fn caller_role() -> Oid {
    unsafe { pg_sys::GetOuterUserId() }
}

/// A role's name, for messages; `"<oid>"` if the role was dropped.
pub fn role_name(role: Oid) -> String {
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        return format!("{}", role.to_u32());
    }
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// Marks pglock's own per-name locks apart from user advisory locks (which use 1 and 2).
const NAME_LOCK_TAG: u16 = 0x504c; // "PL"

/// Take this transaction's exclusive lock on a lock name, held until commit or
/// rollback. Every write to `pglock.locks` takes it first, so writes to one name
/// happen one at a time and each draws its RVN after the previous one committed;
/// reads never take it.  Honors `lock_timeout`, cancel and deadlock detection.
pub fn lock_name(name: &str) {
    unsafe {
        pg_sys::LockAcquire(&name_lock_tag(name), NAME_LOCK_MODE, false, false);
    }
}

/// Give back one [`lock_name`] of this transaction after a write that wrote
/// nothing: a caller that goes on waiting inside the same transaction must not
/// keep the holder from heartbeating.  A lock taken earlier in the transaction
/// by a write that did happen stays held (the count only drops by one).
pub fn unlock_name(name: &str) {
    unsafe {
        pg_sys::LockRelease(&name_lock_tag(name), NAME_LOCK_MODE, false);
    }
}

const NAME_LOCK_MODE: pg_sys::LOCKMODE = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;

fn name_lock_tag(name: &str) -> pg_sys::LOCKTAG {
    let key = fnv1a_64(name.as_bytes());
    pg_sys::LOCKTAG {
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: (key >> 32) as u32,
        locktag_field3: key as u32,
        locktag_field4: NAME_LOCK_TAG,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// FNV-1a: fixed and specified, so every backend and every pglock version agree
/// on which lock a name maps to.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub fn read(name: &str) -> Option<LockRow> {
    with_statements(|client, statements| {
        let table = checked(client.select(&statements.read, Some(1), &[name.into()]));
        if table.is_empty() {
            return None;
        }
        let row = table.first();
        Some(LockRow {
            owner: required_column(&row, 1),
            rvn: required_column(&row, 2),
            lease: required_column(&row, 3),
            data: column(&row, 4),
            released: required_column(&row, 5),
            holder_role: required_column(&row, 6),
        })
    })
}

/// Every lock `owner` holds for `holder_role`, as `(name, rvn)`.  No index
/// leads with the owner: this reads the whole table, which suits a client
/// shutting down, not a hot path.
pub fn held_by(owner: &str, holder_role: Oid) -> Vec<(String, i64)> {
    with_statements(|client, statements| {
        let args: [DatumWithOid; 2] = [owner.into(), holder_role.into()];
        checked(client.select(&statements.held_by, None, &args))
            .map(|row| {
                (
                    checked(row.get::<String>(1)).unwrap_or_default(),
                    checked(row.get::<i64>(2)).unwrap_or_default(),
                )
            })
            .collect()
    })
}

/// Insert a new lock; `None` if the name exists after all (a concurrent insert).
pub fn insert(
    name: &str,
    owner: &str,
    lease: Interval,
    data: Option<&[u8]>,
    holder_role: Oid,
) -> Option<i64> {
    with_statements(|client, statements| {
        let args: [DatumWithOid; 5] = [
            name.into(),
            owner.into(),
            lease.into(),
            data.into(),
            holder_role.into(),
        ];
        let table = checked(client.select(&statements.insert, None, &args));
        (!table.is_empty()).then(|| required_column(&table.first(), 1))
    })
}

/// Give the lock to a new holder if its RVN is still `expected_rvn`; returns the new
/// RVN and the stored data, or `None` if the lock changed meanwhile.
pub fn take_over(
    name: &str,
    expected_rvn: i64,
    owner: &str,
    lease: Interval,
    data: DataChange<'_>,
    holder_role: Oid,
) -> Option<(i64, Option<Vec<u8>>)> {
    let (keep_data, new_data) = data_args(data);
    with_statements(|client, statements| {
        let args: [DatumWithOid; 7] = [
            name.into(),
            expected_rvn.into(),
            owner.into(),
            lease.into(),
            keep_data.into(),
            new_data.into(),
            holder_role.into(),
        ];
        let table = checked(client.select(&statements.take_over, None, &args));
        if table.is_empty() {
            return None;
        }
        let row = table.first();
        Some((required_column(&row, 1), column(&row, 2)))
    })
}

/// Renew a lease held by `owner` at `rvn` for `holder_role`; the new RVN, or `None`
/// if the lock is not held that way.
pub fn heartbeat(
    name: &str,
    owner: &str,
    rvn: i64,
    holder_role: Oid,
    data: DataChange<'_>,
    lease: Option<Interval>,
) -> Option<i64> {
    let (keep_data, new_data) = data_args(data);
    with_statements(|client, statements| {
        let args: [DatumWithOid; 7] = [
            name.into(),
            owner.into(),
            rvn.into(),
            holder_role.into(),
            keep_data.into(),
            new_data.into(),
            lease.into(),
        ];
        let table = checked(client.select(&statements.heartbeat, None, &args));
        (!table.is_empty()).then(|| required_column(&table.first(), 1))
    })
}

/// Release a lock held by `owner` at `rvn` for `holder_role`: delete it, or with
/// `keep` mark it released (new RVN, data replaced unless NULL).  False if not held.
pub fn release(
    name: &str,
    owner: &str,
    rvn: i64,
    holder_role: Oid,
    keep: bool,
    data: Option<&[u8]>,
) -> bool {
    with_statements(|client, statements| {
        let table = if keep {
            let args: [DatumWithOid; 5] = [
                name.into(),
                owner.into(),
                rvn.into(),
                holder_role.into(),
                data.into(),
            ];
            checked(client.select(&statements.release_keep, None, &args))
        } else {
            let args: [DatumWithOid; 4] =
                [name.into(), owner.into(), rvn.into(), holder_role.into()];
            checked(client.select(&statements.release_delete, None, &args))
        };
        !table.is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a_64;

    #[test]
    fn name_hash_is_the_published_fnv1a() {
        // Reference values of 64-bit FNV-1a; a change would split the per-name lock
        // between backends running different pglock builds.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
