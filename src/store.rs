//! `pglock.locks` through SPI: the one module that holds the table's SQL, and the
//! protocol's [`Store`] for this backend.
//!
//! Each statement is planned once per backend and kept (`SPI_keepplan`), so a call
//! costs an execution, not a parse and plan.  Every statement is prepared as
//! "mutating": SPI then takes a fresh snapshot for each one, which a read made after
//! waiting for the name's lock needs to see the writer it waited for.  Reads never
//! assign a transaction id, so a refused acquire writes no WAL.
//!
//! All writes draw their new RVN with `nextval` inside the statement, after the
//! name's lock is held: writes to one name are serialized, so its RVNs only grow.

use std::cell::OnceCell;
use std::panic::Location;

use pglock_protocol::{Claim, DataChange, Holder, Lease, Lock, RoleId, Store};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

use crate::error::internal_error;
use crate::interval::{interval_of, lease_of};
use crate::{ffi, name_lock};

/// This backend, as the protocol sees it: the table through SPI and the name
/// locks (and, in `waiting`, its monotonic clock).
pub struct Backend;

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
#[track_caller]
fn checked<T>(result: SpiResult<T>) -> T {
    let at = Location::caller();
    result.unwrap_or_else(|error| internal_error(format!("pglock: SPI failed: {error}"), at))
}

fn column<T: FromDatum + IntoDatum>(table: &SpiTupleTable<'_>, ordinal: usize) -> Option<T> {
    checked(table.get::<T>(ordinal))
}

#[track_caller]
fn required_column<T: FromDatum + IntoDatum>(table: &SpiTupleTable<'_>, ordinal: usize) -> T {
    let at = Location::caller();
    column(table, ordinal)
        .unwrap_or_else(|| internal_error(format!("pglock: column {ordinal} of a row is NULL"), at))
}

/// `(keep existing, replacement)` for the `CASE WHEN $keep THEN data ELSE $new END` in SQL.
fn data_args(change: DataChange<'_>) -> (bool, Option<&[u8]>) {
    match change {
        DataChange::Keep => (true, None),
        DataChange::Replace(data) => (false, data),
    }
}

fn oid_of(role: RoleId) -> Oid {
    Oid::from(role.0)
}

impl Store for Backend {
    /// The role the caller acts as: its `current_role` outside this SECURITY
    /// DEFINER function (the function runs as the extension's owner).
    fn caller(&mut self) -> RoleId {
        RoleId(ffi::outer_user_id().to_u32())
    }

    fn read(&mut self, name: &str) -> Option<Lock> {
        with_statements(|client, statements| {
            let table = checked(client.select(&statements.read, Some(1), &[name.into()]));
            if table.is_empty() {
                return None;
            }
            let row = table.first();
            Some(Lock {
                owner: required_column(&row, 1),
                rvn: required_column(&row, 2),
                lease: lease_of(required_column(&row, 3)),
                data: column(&row, 4),
                released: required_column(&row, 5),
                holder_role: RoleId(required_column::<Oid>(&row, 6).to_u32()),
            })
        })
    }

    fn insert(&mut self, claim: &Claim<'_>, data: Option<&[u8]>) -> Option<i64> {
        with_statements(|client, statements| {
            let args: [DatumWithOid; 5] = [
                claim.name.into(),
                claim.owner.into(),
                interval_of(claim.lease).into(),
                data.into(),
                oid_of(claim.role).into(),
            ];
            let table = checked(client.select(&statements.insert, None, &args));
            (!table.is_empty()).then(|| required_column(&table.first(), 1))
        })
    }

    fn take_over(
        &mut self,
        claim: &Claim<'_>,
        expected_rvn: i64,
        data: DataChange<'_>,
    ) -> Option<(i64, Option<Vec<u8>>)> {
        let (keep_data, new_data) = data_args(data);
        with_statements(|client, statements| {
            let args: [DatumWithOid; 7] = [
                claim.name.into(),
                expected_rvn.into(),
                claim.owner.into(),
                interval_of(claim.lease).into(),
                keep_data.into(),
                new_data.into(),
                oid_of(claim.role).into(),
            ];
            let table = checked(client.select(&statements.take_over, None, &args));
            if table.is_empty() {
                return None;
            }
            let row = table.first();
            Some((required_column(&row, 1), column(&row, 2)))
        })
    }

    fn heartbeat(
        &mut self,
        holder: &Holder<'_>,
        data: DataChange<'_>,
        lease: Option<&Lease>,
    ) -> Option<i64> {
        let (keep_data, new_data) = data_args(data);
        with_statements(|client, statements| {
            let args: [DatumWithOid; 7] = [
                holder.name.into(),
                holder.owner.into(),
                holder.rvn.into(),
                oid_of(holder.role).into(),
                keep_data.into(),
                new_data.into(),
                lease.map(interval_of).into(),
            ];
            let table = checked(client.select(&statements.heartbeat, None, &args));
            (!table.is_empty()).then(|| required_column(&table.first(), 1))
        })
    }

    fn release(&mut self, holder: &Holder<'_>, keep: bool, data: Option<&[u8]>) -> bool {
        with_statements(|client, statements| {
            let (name, owner, rvn, role) = (holder.name, holder.owner, holder.rvn, holder.role);
            let table = if keep {
                let args: [DatumWithOid; 5] = [
                    name.into(),
                    owner.into(),
                    rvn.into(),
                    oid_of(role).into(),
                    data.into(),
                ];
                checked(client.select(&statements.release_keep, None, &args))
            } else {
                let args: [DatumWithOid; 4] =
                    [name.into(), owner.into(), rvn.into(), oid_of(role).into()];
                checked(client.select(&statements.release_delete, None, &args))
            };
            !table.is_empty()
        })
    }

    /// No index leads with the owner: this reads the whole table, which suits a
    /// client shutting down, not a hot path.
    fn held_by(&mut self, owner: &str, role: RoleId) -> Vec<(String, i64)> {
        with_statements(|client, statements| {
            let args: [DatumWithOid; 2] = [owner.into(), oid_of(role).into()];
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

    fn lock_name(&mut self, name: &str) {
        name_lock::lock(name);
    }

    fn unlock_name(&mut self, name: &str) {
        name_lock::unlock(name);
    }
}
