//! `pglock.locks` through SPI: the one module that holds the table's SQL, and the
//! protocol's [`Store`] for this backend.
//!
//! The SQL functions run as their caller (SECURITY INVOKER), so the caller's role
//! is the acting role; every statement here runs as the table's owner, in a
//! security-restricted context, with sequential scans off (see [`ffi::ActingAs`],
//! [`ffi::SeqScansOff`]).  Every object and operator is schema-qualified, so no
//! function or operator on the caller's `search_path` can reach a statement.
//!
//! Each statement is planned once per backend and kept (`SPI_keepplan`), so a call
//! costs an execution, not a parse and plan.  Every statement is prepared as
//! "mutating": SPI then takes a fresh snapshot for each one, which a read made after
//! waiting for the name's lock needs to see the writer it waited for.  Reads never
//! assign a transaction id, so a refused acquire writes no WAL.
//!
//! Writes draw their new RVN with `nextval` inside the statement, after the
//! name's lock is held: writes to one name are serialized, so its RVNs only grow.

use std::cell::{Cell, OnceCell};
use std::panic::Location;

use pglock_protocol::{
    Claim, DataChange, Fencing, Fields, Holder, Lease, Lock, Released, RoleId, Store, Timestamp,
};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

use crate::error::{internal_error, PglockError};
use crate::interval::{interval_of, lease_of};
use crate::{ffi, name_lock};

/// This backend, as the protocol sees it, for one call: who calls, the table
/// through SPI, the name locks (and, in `waiting`, its monotonic clock).
pub struct Backend {
    caller: RoleId,
    owner: Oid,
    /// The secret's table: the key the name-lock secret is cached under, so a
    /// re-created extension (a new table, a new secret) is noticed.
    secret_relid: Oid,
}

impl Backend {
    /// The backend acting for `current_user`, as the call found it; an error if
    /// the extension's objects are older than this library (it was installed
    /// and the server restarted, but `ALTER EXTENSION pglock UPDATE` not run).
    #[track_caller]
    pub fn for_current_user() -> Result<Backend, PglockError> {
        let at = Location::caller();
        let caller = RoleId(ffi::current_user_id().to_u32());
        let Some(secret_relid) = ffi::relation_id(c"pglock", c"name_lock_secret") else {
            return Err(PglockError::ExtensionNotUpdated);
        };
        let owner = ffi::relation_id(c"pglock", c"locks")
            .and_then(ffi::relation_owner)
            .unwrap_or_else(|| {
                internal_error("pglock: the table pglock.locks is missing".into(), at)
            });
        Ok(Backend {
            caller,
            owner,
            secret_relid,
        })
    }

    /// The role this call acts as, for checks outside the protocol.
    pub fn caller_role(&self) -> RoleId {
        self.caller
    }

    /// Run `f` as the table's owner, with an SPI connection and this backend's
    /// prepared statements.
    fn with_statements<R>(&self, f: impl FnOnce(&SpiClient<'_>, &Statements) -> R) -> R {
        let _owner = ffi::ActingAs::enter(self.owner);
        let _plans = ffi::SeqScansOff::enter();
        Spi::connect(|client| {
            STATEMENTS.with(|cell| {
                let statements = cell.get_or_init(|| Statements::prepare(client));
                f(client, statements)
            })
        })
    }

    /// Run a write; a transaction that wrote a lock commits durably whatever
    /// `synchronous_commit` the session set.
    fn write<R>(&self, f: impl FnOnce(&SpiClient<'_>, &Statements) -> R) -> R {
        ffi::force_durable_commit();
        self.with_statements(f)
    }

    /// The secret that keys name locks in this database, read once per backend.
    fn name_lock_secret(&self) -> [u8; 16] {
        thread_local! {
            static SECRET: Cell<Option<(Oid, [u8; 16])>> = const { Cell::new(None) };
        }
        if let Some((relid, secret)) = SECRET.get() {
            if relid == self.secret_relid {
                return secret;
            }
        }
        let stored: Vec<u8> = self.with_statements(|client, statements| {
            let table = checked(client.select(&statements.name_lock_secret, Some(1), &[]));
            if table.is_empty() {
                internal_error(
                    "pglock: pglock.name_lock_secret is empty".into(),
                    Location::caller(),
                )
            }
            required_column(&table.first(), 1)
        });
        let Ok(secret) = <[u8; 16]>::try_from(stored.as_slice()) else {
            internal_error(
                format!(
                    "pglock: the name lock secret has {} bytes, not 16",
                    stored.len()
                ),
                Location::caller(),
            )
        };
        SECRET.set(Some((self.secret_relid, secret)));
        secret
    }
}

/// The columns every read returns, in order, then the data if asked for.
macro_rules! lock_columns {
    () => {
        "owner, rvn, lease, released, holder_role::pg_catalog.oid, updated_at"
    };
}

const READ: &str = concat!(
    "SELECT ",
    lock_columns!(),
    ", data FROM pglock.locks WHERE name OPERATOR(pg_catalog.=) $1"
);

const READ_WITHOUT_DATA: &str = concat!(
    "SELECT ",
    lock_columns!(),
    " FROM pglock.locks WHERE name OPERATOR(pg_catalog.=) $1"
);

const INSERT: &str = "\
    INSERT INTO pglock.locks (name, owner, rvn, lease, data, holder_role, updated_at) \
    VALUES ($1, $2, pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), $3, $4, $5, \
            pg_catalog.clock_timestamp()) \
    ON CONFLICT (name) DO NOTHING \
    RETURNING rvn";

/// What a takeover writes; `$1` is the name, `$2` the RVN it expects.
macro_rules! take_over_set {
    () => {
        "SET owner = $3, rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), \
             lease = $4, data = CASE WHEN $5 THEN data ELSE $6 END, released = false, \
             holder_role = $7, updated_at = pg_catalog.clock_timestamp() "
    };
}

const TAKE_OVER: &str = concat!(
    "UPDATE pglock.locks ",
    take_over_set!(),
    "WHERE name OPERATOR(pg_catalog.=) $1 AND rvn OPERATOR(pg_catalog.=) $2 ",
    "RETURNING rvn, data"
);

/// A takeover that does not queue for the row: when another transaction has it
/// locked (a bulk release in progress), it matches nothing.
const TAKE_OVER_IF_UNLOCKED: &str = concat!(
    "WITH target AS (SELECT ctid FROM pglock.locks ",
    "WHERE name OPERATOR(pg_catalog.=) $1 AND rvn OPERATOR(pg_catalog.=) $2 ",
    "FOR NO KEY UPDATE SKIP LOCKED) ",
    "UPDATE pglock.locks ",
    take_over_set!(),
    "FROM target WHERE pglock.locks.ctid OPERATOR(pg_catalog.=) target.ctid ",
    "AND pglock.locks.name OPERATOR(pg_catalog.=) $1 ",
    "RETURNING rvn, data"
);

/// The holder named exactly, not released: `$1` to `$4` are name, owner, RVN, role.
macro_rules! held_exactly {
    () => {
        "WHERE name OPERATOR(pg_catalog.=) $1 AND owner OPERATOR(pg_catalog.=) $2 \
           AND rvn OPERATOR(pg_catalog.=) $3 \
           AND holder_role::pg_catalog.oid OPERATOR(pg_catalog.=) $4 AND NOT released "
    };
}

const HEARTBEAT: &str = concat!(
    "UPDATE pglock.locks ",
    "SET rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), ",
    "data = CASE WHEN $5 THEN data ELSE $6 END, ",
    "lease = COALESCE($7, lease), updated_at = pg_catalog.clock_timestamp() ",
    held_exactly!(),
    "RETURNING rvn"
);

const RELEASE_DELETE: &str = concat!(
    "DELETE FROM pglock.locks ",
    held_exactly!(),
    "RETURNING rvn"
);

const RELEASE_KEEP: &str = concat!(
    "UPDATE pglock.locks ",
    "SET released = true, rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass), ",
    "data = COALESCE($5, data), updated_at = pg_catalog.clock_timestamp() ",
    held_exactly!(),
    "RETURNING rvn"
);

const HELD_BY: &str = "\
    SELECT name, rvn FROM pglock.locks \
     WHERE owner OPERATOR(pg_catalog.=) $1 \
       AND holder_role::pg_catalog.oid OPERATOR(pg_catalog.=) $2 AND NOT released";

const FORCE_DELETE: &str = "\
    DELETE FROM pglock.locks WHERE name OPERATOR(pg_catalog.=) $1 RETURNING rvn";

const ADVANCE_RVNS: &str = "\
    SELECT pg_catalog.setval('pglock.rvn_seq'::pg_catalog.regclass, \
           GREATEST($1, (SELECT pg_catalog.max(rvn) FROM pglock.locks)))";

const RENUMBER: &str = "\
    UPDATE pglock.locks \
       SET rvn = pg_catalog.nextval('pglock.rvn_seq'::pg_catalog.regclass) \
     WHERE name OPERATOR(pg_catalog.=) $1 AND rvn OPERATOR(pg_catalog.=) $2 \
    RETURNING rvn";

const NAME_LOCK_SECRET: &str = "SELECT secret FROM pglock.name_lock_secret";

struct Statements {
    read: OwnedPreparedStatement,
    read_without_data: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
    take_over: OwnedPreparedStatement,
    take_over_if_unlocked: OwnedPreparedStatement,
    heartbeat: OwnedPreparedStatement,
    release_delete: OwnedPreparedStatement,
    release_keep: OwnedPreparedStatement,
    held_by: OwnedPreparedStatement,
    force_delete: OwnedPreparedStatement,
    advance_rvns: OwnedPreparedStatement,
    renumber: OwnedPreparedStatement,
    name_lock_secret: OwnedPreparedStatement,
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
        let take_over_types = [text, int8, text, interval, boolean, bytea, oid];
        Statements {
            read: keep(READ, &[text]),
            read_without_data: keep(READ_WITHOUT_DATA, &[text]),
            insert: keep(INSERT, &[text, text, interval, bytea, oid]),
            take_over: keep(TAKE_OVER, &take_over_types),
            take_over_if_unlocked: keep(TAKE_OVER_IF_UNLOCKED, &take_over_types),
            heartbeat: keep(
                HEARTBEAT,
                &[text, text, int8, oid, boolean, bytea, interval],
            ),
            release_delete: keep(RELEASE_DELETE, &[text, text, int8, oid]),
            release_keep: keep(RELEASE_KEEP, &[text, text, int8, oid, bytea]),
            held_by: keep(HELD_BY, &[text, oid]),
            force_delete: keep(FORCE_DELETE, &[text]),
            advance_rvns: keep(ADVANCE_RVNS, &[int8]),
            renumber: keep(RENUMBER, &[text, int8]),
            name_lock_secret: keep(NAME_LOCK_SECRET, &[]),
        }
    }
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

/// The first row of `table`'s first column, if there is a row.
fn first_rvn(table: SpiTupleTable<'_>) -> Option<i64> {
    (!table.is_empty()).then(|| required_column(&table.first(), 1))
}

impl Store for Backend {
    fn caller(&mut self) -> RoleId {
        self.caller
    }

    fn server_time(&mut self) -> Timestamp {
        Timestamp(ffi::wall_clock_now())
    }

    fn read(&mut self, name: &str, fields: Fields) -> Option<Lock> {
        self.with_statements(|client, statements| {
            let statement = match fields {
                Fields::WithData => &statements.read,
                Fields::WithoutData => &statements.read_without_data,
            };
            let table = checked(client.select(statement, Some(1), &[name.into()]));
            if table.is_empty() {
                return None;
            }
            let row = table.first();
            let written_at: TimestampWithTimeZone = required_column(&row, 6);
            Some(Lock {
                owner: required_column(&row, 1),
                rvn: required_column(&row, 2),
                lease: lease_of(required_column(&row, 3)),
                released: required_column(&row, 4),
                holder_role: RoleId(required_column::<Oid>(&row, 5).to_u32()),
                written_at: Timestamp(pg_sys::TimestampTz::from(written_at)),
                data: match fields {
                    Fields::WithData => column(&row, 7),
                    Fields::WithoutData => None,
                },
            })
        })
    }

    fn insert(&mut self, claim: &Claim<'_>, data: Option<&[u8]>) -> Option<i64> {
        self.write(|client, statements| {
            let args: [DatumWithOid; 5] = [
                claim.name.into(),
                claim.owner.into(),
                interval_of(claim.lease).into(),
                data.into(),
                oid_of(claim.role).into(),
            ];
            first_rvn(checked(client.select(&statements.insert, None, &args)))
        })
    }

    fn take_over(
        &mut self,
        claim: &Claim<'_>,
        expected_rvn: i64,
        data: DataChange<'_>,
        wait_for_row: bool,
    ) -> Option<(i64, Option<Vec<u8>>)> {
        let (keep_data, new_data) = data_args(data);
        self.write(|client, statements| {
            let statement = if wait_for_row {
                &statements.take_over
            } else {
                &statements.take_over_if_unlocked
            };
            let args: [DatumWithOid; 7] = [
                claim.name.into(),
                expected_rvn.into(),
                claim.owner.into(),
                interval_of(claim.lease).into(),
                keep_data.into(),
                new_data.into(),
                oid_of(claim.role).into(),
            ];
            let table = checked(client.select(statement, None, &args));
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
        self.write(|client, statements| {
            let args: [DatumWithOid; 7] = [
                holder.name.into(),
                holder.owner.into(),
                holder.rvn.into(),
                oid_of(holder.role).into(),
                keep_data.into(),
                new_data.into(),
                lease.map(interval_of).into(),
            ];
            first_rvn(checked(client.select(&statements.heartbeat, None, &args)))
        })
    }

    fn release(
        &mut self,
        holder: &Holder<'_>,
        keep: bool,
        data: Option<&[u8]>,
    ) -> Option<Released> {
        self.write(|client, statements| {
            let (name, owner, rvn, role) =
                (holder.name, holder.owner, holder.rvn, oid_of(holder.role));
            if keep {
                let args: [DatumWithOid; 5] = [
                    name.into(),
                    owner.into(),
                    rvn.into(),
                    role.into(),
                    data.into(),
                ];
                first_rvn(checked(client.select(
                    &statements.release_keep,
                    None,
                    &args,
                )))
                .map(|rvn| Released::Kept { rvn })
            } else {
                let args: [DatumWithOid; 4] = [name.into(), owner.into(), rvn.into(), role.into()];
                first_rvn(checked(client.select(
                    &statements.release_delete,
                    None,
                    &args,
                )))
                .map(|_| Released::Deleted)
            }
        })
    }

    fn force_delete(&mut self, name: &str) -> bool {
        self.write(|client, statements| {
            let table = checked(client.select(&statements.force_delete, None, &[name.into()]));
            !table.is_empty()
        })
    }

    /// No index leads with the owner: this reads the whole table, which suits a
    /// client shutting down, not a hot path.
    fn held_by(&mut self, owner: &str, role: RoleId) -> Vec<(String, i64)> {
        self.with_statements(|client, statements| {
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

    fn advance_rvns_past(&mut self, rvn: i64) {
        self.with_statements(|client, statements| {
            checked(client.select(&statements.advance_rvns, None, &[rvn.into()]));
        });
    }

    #[track_caller]
    fn renumber(&mut self, name: &str, rvn: i64) -> i64 {
        let at = Location::caller();
        self.write(|client, statements| {
            let args: [DatumWithOid; 2] = [name.into(), rvn.into()];
            first_rvn(checked(client.select(&statements.renumber, None, &args)))
                .unwrap_or_else(|| internal_error(format!("pglock: lock \"{name}\" vanished"), at))
        })
    }

    fn lock_name(&mut self, name: &str) {
        name_lock::lock(&self.name_lock_secret(), name);
    }

    fn try_lock_name(&mut self, name: &str) -> bool {
        name_lock::try_lock(&self.name_lock_secret(), name)
    }

    fn unlock_name(&mut self, name: &str) {
        name_lock::unlock(&self.name_lock_secret(), name);
    }

    fn name_lock_key(&mut self, name: &str) -> u64 {
        name_lock::key(&self.name_lock_secret(), name)
    }
}

// ---------------------------------------------------------------------------
// Fences (`pglock_fence`): the protocol's `Fencing` on top of `Store`, kept
// apart from the statements above.  A fence takes the name's lock in share mode
// (`name_lock::lock_shared`) and share-locks the holder's row with the statement
// below, both until the transaction ends.

/// The holder's row, share-locked: `$1` to `$4` are name, owner, RVN, role.  A
/// row another transaction is updating or deleting is waited for, then
/// re-checked as that transaction left it (READ COMMITTED), or is a
/// serialization failure under a transaction snapshot.
const FENCE: &str = concat!(
    "SELECT rvn FROM pglock.locks ",
    held_exactly!(),
    "FOR SHARE"
);

thread_local! {
    static FENCE_STATEMENT: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
}

impl Fencing for Backend {
    fn lock_name_shared(&mut self, name: &str) {
        name_lock::lock_shared(&self.name_lock_secret(), name);
    }

    fn unlock_name_shared(&mut self, name: &str) {
        name_lock::unlock_shared(&self.name_lock_secret(), name);
    }

    /// A row lock is no write of the lock: no new RVN and no durable commit
    /// forced (the fenced transaction's own writes commit as its session says).
    fn fence(&mut self, holder: &Holder<'_>) -> Option<i64> {
        self.with_statements(|client, _| {
            FENCE_STATEMENT.with(|cell| {
                let statement = cell.get_or_init(|| {
                    use pg_sys::{INT8OID as int8, OIDOID as oid, TEXTOID as text};
                    let types = [text, text, int8, oid].map(PgOid::from_untagged);
                    checked(client.prepare_mut(FENCE, &types)).keep()
                });
                let args: [DatumWithOid; 4] = [
                    holder.name.into(),
                    holder.owner.into(),
                    holder.rvn.into(),
                    oid_of(holder.role).into(),
                ];
                first_rvn(checked(client.select(statement, None, &args)))
            })
        })
    }
}
