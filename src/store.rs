//! The protocol's [`Store`] for this backend: `pglock.locks` read and written.
//!
//! The SQL functions run as their caller (SECURITY INVOKER), so the caller's role
//! is the acting role.  The hot path (read, insert, take over, heartbeat,
//! release) goes straight through the table and index access methods
//! ([`crate::locks_table`]): one index lookup per read, no parse, plan or executor, and
//! nothing a caller's `search_path` or settings could reach.  Each read takes a
//! fresh snapshot (READ COMMITTED), which a read made after waiting for the
//! name's lock needs to see the writer it waited for; reads never assign a
//! transaction id, so a refused acquire writes no WAL.  Writes draw their new RVN
//! from the sequence after the name's lock is held: writes to one name are
//! serialized, so its RVNs only grow.
//!
//! What is rare (an owner's locks at shutdown, moving the sequence, the name
//! locks' secret) stays SQL, through SPI: run as the table's owner, in a
//! security-restricted context, with sequential scans and JIT off (see
//! [`session::ActingAs`], [`session::PlannerSettings`]), every object and
//! operator schema-qualified; each statement planned once per backend and kept.
//! So are fences: a row lock that waits for a writer and re-checks the row as
//! that writer left it is what `SELECT ... FOR SHARE` does.

use std::cell::{Cell, OnceCell};
use std::time::Duration;

use pglock_protocol::slot_names::semaphore_of;
use pglock_protocol::waiting::Clock;
use pglock_protocol::{
    Claim, DataChange, Fencing, Fields, Heir, Holder, Lease, Lock, Queue, Recorded, Released,
    RoleId, Store,
};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};

use crate::error::{bug, PglockError};
use crate::interval::{interval_of, lease_of};
use crate::locks_table::{Changes, LocksTable, NewRow, Objects, Row};
use crate::observed::LockKey;
use crate::waiters::{Kind, Place};
use crate::{clock, name_lock, session, shared_memory};

/// This backend, as the protocol sees it, for one call: who calls, the table,
/// the name locks, what the server observed of locks and who waits for them
/// (in shared memory), and its monotonic clock (`clock`).
pub struct Backend {
    caller: RoleId,
    objects: Objects,
    access: Access,
    /// The table, opened at its first use in this call, closed when it ends.
    table: OnceCell<LocksTable>,
    /// A wait of this call slept at least once.
    pub slept: bool,
}

/// What a call may do to the table: the lock it takes on it for the rest of the
/// transaction (a reader's, or a writer's as any DML takes, asked for once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Backend {
    /// The backend acting for `current_user`, as the call found it; an error if
    /// the extension's objects are older than this library (it was installed
    /// and the server restarted, but `ALTER EXTENSION pglock UPDATE` not run).
    pub fn for_current_user(access: Access) -> Result<Backend, PglockError> {
        let caller = RoleId(session::current_user_id().to_u32());
        let objects = Objects::current().ok_or(PglockError::ExtensionNotUpdated)?;
        Ok(Backend {
            caller,
            objects,
            access,
            table: OnceCell::new(),
            slept: false,
        })
    }

    /// The lock `name` of this database, as shared memory keys it.
    pub fn lock_key(&self, name: &str) -> LockKey {
        LockKey {
            database: session::database_id().to_u32(),
            key: name_lock::key(&self.name_lock_secret(), name),
        }
    }

    /// The server's queue `queue`, as the waiters' seats name it.
    pub fn place(&self, kind: Kind, queue: Queue<'_>) -> Place {
        let secret = self.name_lock_secret();
        let key = match queue {
            Queue::Lock(name) => name_lock::key(&secret, name),
            Queue::Slots(name) => name_lock::slots_key(&secret, name),
        };
        Place {
            kind,
            database: session::database_id().to_u32(),
            key,
        }
    }

    /// Record a write of `name` that gave it `rvn` (`None`: deleted it), before
    /// it can commit.
    fn observe(&self, name: &str, rvn: Option<i64>) {
        if let Some(shared) = shared_memory::get() {
            let lock = self.lock_key(name);
            match rvn {
                Some(rvn) => shared.observations.written(lock, rvn, clock::now()),
                None => shared.observations.deleted(lock, clock::now()),
            }
        }
    }

    /// This transaction takes `name`'s lock: wake its waiters (and, for a
    /// semaphore's slot, the semaphore's) when it ends.
    fn touch(&self, name: &str) {
        let Some(shared) = shared_memory::get() else {
            return;
        };
        let database = session::database_id().to_u32();
        let secret = self.name_lock_secret();
        shared
            .waiters
            .touched(database, name_lock::key(&secret, name));
        if let Some((semaphore, _)) = semaphore_of(name) {
            shared
                .waiters
                .touched(database, name_lock::slots_key(&secret, semaphore));
        }
    }

    fn table(&self) -> &LocksTable {
        self.table
            .get_or_init(|| LocksTable::open(&self.objects, self.access == Access::Write))
    }

    /// The role this call acts as, for checks outside the protocol.
    pub fn caller_role(&self) -> RoleId {
        self.caller
    }

    /// Run `f` as the table's owner, with an SPI connection and this backend's
    /// prepared statements.
    fn with_statements<R>(&self, f: impl FnOnce(&SpiClient<'_>, &Statements) -> R) -> R {
        let _owner = session::ActingAs::enter(self.objects.owner);
        let _plans = session::PlannerSettings::enter();
        Spi::connect(|client| {
            STATEMENTS.with(|cell| {
                let statements = cell.get_or_init(|| Statements::prepare(client));
                f(client, statements)
            })
        })
    }

    /// The table, to write: a transaction that wrote a lock commits durably
    /// whatever `synchronous_commit` the session set.
    #[track_caller]
    fn table_to_write(&self) -> &LocksTable {
        if self.access != Access::Write {
            bug("a write from a read-only call");
        }
        session::force_durable_commit();
        self.table()
    }

    /// A new RVN from the sequence, drawn as the table's owner.
    fn draw_rvn(&self) -> i64 {
        let _owner = session::ActingAs::enter(self.objects.owner);
        self.objects.next_rvn()
    }

    /// The secret that keys name locks in this database, read once per backend.
    fn name_lock_secret(&self) -> [u8; 16] {
        thread_local! {
            static SECRET: Cell<Option<(Oid, [u8; 16])>> = const { Cell::new(None) };
        }
        if let Some((relid, secret)) = SECRET.get() {
            if relid == self.objects.secret {
                return secret;
            }
        }
        let stored: Vec<u8> = self.with_statements(|client, statements| {
            let table = checked(client.select(&statements.name_lock_secret, Some(1), &[]));
            if table.is_empty() {
                bug("pglock.name_lock_secret is empty")
            }
            required(table.first().get(1))
        });
        let Ok(secret) = <[u8; 16]>::try_from(stored.as_slice()) else {
            bug(format_args!(
                "the name lock secret has {} bytes, not 16",
                stored.len()
            ))
        };
        SECRET.set(Some((self.objects.secret, secret)));
        secret
    }
}

const HELD_BY: &str = "\
    SELECT name, rvn FROM pglock.locks \
     WHERE owner OPERATOR(pg_catalog.=) $1 \
       AND holder_role::pg_catalog.oid OPERATOR(pg_catalog.=) $2 AND NOT released";

const ADVANCE_RVNS: &str = "\
    SELECT pg_catalog.setval('pglock.rvn_seq'::pg_catalog.regclass, \
           GREATEST($1, (SELECT pg_catalog.max(rvn) FROM pglock.locks)))";

const NAME_LOCK_SECRET: &str = "SELECT secret FROM pglock.name_lock_secret";

/// The holder's row, share-locked: `$1` to `$4` are name, owner, RVN, role.  A
/// row another transaction is updating or deleting is waited for, then
/// re-checked as that transaction left it (READ COMMITTED), or is a
/// serialization failure under a transaction snapshot.  The condition is
/// [`Holder::is`] in SQL: the statement must re-check it after the wait.
const FENCE: &str = "\
    SELECT rvn FROM pglock.locks \
     WHERE name OPERATOR(pg_catalog.=) $1 AND owner OPERATOR(pg_catalog.=) $2 \
       AND rvn OPERATOR(pg_catalog.=) $3 \
       AND holder_role::pg_catalog.oid OPERATOR(pg_catalog.=) $4 AND NOT released \
       FOR SHARE";

/// This backend's prepared statements, planned once and kept.  The fence's is
/// planned at the first fence: planning a `FOR SHARE` statement locks the table
/// it names (RowShareLock, to the end of the transaction), which no other call
/// should take.
struct Statements {
    held_by: OwnedPreparedStatement,
    advance_rvns: OwnedPreparedStatement,
    name_lock_secret: OwnedPreparedStatement,
    fence: OnceCell<OwnedPreparedStatement>,
}

thread_local! {
    static STATEMENTS: OnceCell<Statements> = const { OnceCell::new() };
}

impl Statements {
    fn prepare(client: &SpiClient<'_>) -> Self {
        use pg_sys::{INT8OID as int8, OIDOID as oid, TEXTOID as text};
        Statements {
            held_by: keep(client, HELD_BY, &[text, oid]),
            advance_rvns: keep(client, ADVANCE_RVNS, &[int8]),
            name_lock_secret: keep(client, NAME_LOCK_SECRET, &[]),
            fence: OnceCell::new(),
        }
    }

    fn fence(&self, client: &SpiClient<'_>) -> &OwnedPreparedStatement {
        use pg_sys::{INT8OID as int8, OIDOID as oid, TEXTOID as text};
        self.fence
            .get_or_init(|| keep(client, FENCE, &[text, text, int8, oid]))
    }
}

/// `sql` with parameters of `types`, planned and kept for the backend's life.
fn keep(client: &SpiClient<'_>, sql: &str, types: &[Oid]) -> OwnedPreparedStatement {
    let types: Vec<PgOid> = types.iter().map(|t| PgOid::from_untagged(*t)).collect();
    checked(client.prepare_mut(sql, &types)).keep()
}

/// SPI-level failures (not PostgreSQL errors, which propagate as themselves) mean a
/// statement above is wrong: a bug, reported as such.
#[track_caller]
fn checked<T>(result: SpiResult<T>) -> T {
    result.unwrap_or_else(|error| bug(format_args!("SPI failed: {error}")))
}

/// A column of a row of a statement above, which is never NULL.
#[track_caller]
fn required<T>(column: SpiResult<Option<T>>) -> T {
    checked(column).unwrap_or_else(|| bug("a column of a row is NULL"))
}

/// The holder `row` records, as the protocol's rule reads it.
fn recorded<'a>(row: &'a Row<'_>) -> Recorded<'a> {
    Recorded {
        owner: row.owner(),
        rvn: row.rvn(),
        role: RoleId(row.holder_role().to_u32()),
        released: row.released(),
    }
}

fn oid_of(role: RoleId) -> Oid {
    Oid::from(role.0)
}

impl Store for Backend {
    fn caller(&mut self) -> RoleId {
        self.caller
    }

    fn stood_still(&mut self, name: &str, rvn: i64) -> Option<Duration> {
        let shared = shared_memory::get()?;
        let now = clock::now();
        // A standby watches nothing (it writes nothing, and its callers only read).
        if !session::in_recovery() {
            shared.observations.start_watching(now);
        }
        shared
            .observations
            .stood_still(self.lock_key(name), rvn, now)
    }

    fn queued_ahead(&mut self, queue: Queue<'_>) -> bool {
        let Some(shared) = shared_memory::get() else {
            return false;
        };
        let kind = match queue {
            Queue::Lock(_) => Kind::Lock,
            Queue::Slots(_) => Kind::Slots,
        };
        shared.waiters.queued_ahead(self.place(kind, queue))
    }

    fn read(&mut self, name: &str, fields: Fields) -> Option<Lock> {
        self.table().find(name, |row| {
            row.map(|row| Lock {
                owner: row.owner().to_owned(),
                rvn: row.rvn(),
                lease: lease_of(row.lease()),
                released: row.released(),
                holder_role: RoleId(row.holder_role().to_u32()),
                data: match fields {
                    Fields::WithData => row.data(),
                    Fields::WithoutData => None,
                },
            })
        })
    }

    fn insert(&mut self, claim: &Claim<'_>, data: Option<&[u8]>) -> Option<i64> {
        let row = NewRow {
            name: claim.name,
            owner: claim.owner,
            lease: interval_of(claim.lease),
            data,
            holder_role: oid_of(claim.role),
        };
        let rvn = self.table_to_write().insert(&row, || self.draw_rvn());
        if rvn.is_some() {
            self.observe(claim.name, rvn);
        }
        rvn
    }

    fn take_over(
        &mut self,
        claim: &Claim<'_>,
        expected_rvn: i64,
        data: DataChange<'_>,
        wait_for_row: bool,
    ) -> Option<(i64, Option<Vec<u8>>)> {
        let change = || {
            let changes = Changes::new(self.draw_rvn())
                .owner(claim.owner)
                .lease(interval_of(claim.lease))
                .released(false)
                .holder_role(oid_of(claim.role));
            match data {
                DataChange::Keep => changes,
                DataChange::Replace(data) => changes.data(data),
            }
        };
        let written = self.table_to_write().update(
            claim.name,
            |row| row.rvn() == expected_rvn,
            change,
            wait_for_row,
            |written| (written.rvn(), written.data()),
        );
        if let Some((rvn, _)) = &written {
            self.observe(claim.name, Some(*rvn));
        }
        written
    }

    fn heartbeat(
        &mut self,
        holder: &Holder<'_>,
        data: DataChange<'_>,
        lease: Option<&Lease>,
    ) -> Option<i64> {
        let change = || {
            let mut changes = Changes::new(self.draw_rvn());
            if let DataChange::Replace(data) = data {
                changes = changes.data(data);
            }
            if let Some(lease) = lease {
                changes = changes.lease(interval_of(lease));
            }
            changes
        };
        let rvn = self.table_to_write().update(
            holder.name,
            |row| holder.is(recorded(row)),
            change,
            true,
            |row| row.rvn(),
        );
        if rvn.is_some() {
            self.observe(holder.name, rvn);
        }
        rvn
    }

    fn release(
        &mut self,
        holder: &Holder<'_>,
        keep: bool,
        data: Option<&[u8]>,
    ) -> Option<Released> {
        let table = self.table_to_write();
        let matches = |row: &Row<'_>| holder.is(recorded(row));
        if !keep {
            let deleted = table.delete(holder.name, matches);
            if deleted {
                self.observe(holder.name, None);
            }
            return deleted.then_some(Released::Deleted);
        }
        let change = || {
            let changes = Changes::new(self.draw_rvn()).released(true);
            match data {
                Some(data) => changes.data(Some(data)),
                None => changes,
            }
        };
        let rvn = table.update(holder.name, matches, change, true, |row| row.rvn());
        if rvn.is_some() {
            self.observe(holder.name, rvn);
        }
        rvn.map(|rvn| Released::Kept { rvn })
    }

    /// Only for a release outside an explicit transaction block, which commits
    /// as the statement ends: the heir must not give up before it does.
    fn heir(&mut self, name: &str) -> Option<Heir> {
        let shared = shared_memory::get()?;
        if session::in_transaction_block() {
            return None;
        }
        // A semaphore's slot is its slot waiters' first.
        if let Some((semaphore, _)) = semaphore_of(name) {
            if shared
                .waiters
                .queued_ahead(self.place(Kind::Slots, Queue::Slots(semaphore)))
            {
                return None;
            }
        }
        shared
            .waiters
            .heir(self.place(Kind::Lock, Queue::Lock(name)))
    }

    fn hand_over(&mut self, holder: &Holder<'_>, heir: &Heir, data: DataChange<'_>) -> Option<i64> {
        let change = || {
            let changes = Changes::new(self.draw_rvn())
                .owner(&heir.owner)
                .lease(interval_of(&heir.lease))
                .released(false)
                .holder_role(oid_of(heir.role));
            match data {
                DataChange::Keep => changes,
                DataChange::Replace(data) => changes.data(data),
            }
        };
        let rvn = self.table_to_write().update(
            holder.name,
            |row| holder.is(recorded(row)),
            change,
            true,
            |row| row.rvn(),
        );
        if rvn.is_some() {
            self.observe(holder.name, rvn);
        }
        rvn
    }

    fn handed_over(&mut self, name: &str, heir: &Heir, rvn: i64) {
        // The heir learns of the lock in its seat; it is woken at commit like
        // every waiter of a lock whose name lock this transaction took.
        if let Some(shared) = shared_memory::get() {
            let place = self.place(Kind::Lock, Queue::Lock(name));
            shared.waiters.grant(place, heir.ticket, rvn);
        }
    }

    fn handed_to_me(&mut self, name: &str) -> Option<i64> {
        let shared = shared_memory::get()?;
        shared
            .waiters
            .granted_to_me(self.place(Kind::Lock, Queue::Lock(name)))
    }

    fn force_delete(&mut self, name: &str) -> bool {
        let deleted = self.table_to_write().delete(name, |_| true);
        if deleted {
            self.observe(name, None);
        }
        deleted
    }

    /// No index leads with the owner: this reads the whole table, which suits a
    /// client shutting down, not a hot path.
    fn held_by(&mut self, owner: &str, role: RoleId) -> Vec<(String, i64)> {
        self.with_statements(|client, statements| {
            let args: [DatumWithOid; 2] = [owner.into(), oid_of(role).into()];
            checked(client.select(&statements.held_by, None, &args))
                .map(|row| (required(row.get(1)), required(row.get(2))))
                .collect()
        })
    }

    fn advance_rvns_past(&mut self, rvn: i64) {
        self.with_statements(|client, statements| {
            checked(client.select(&statements.advance_rvns, None, &[rvn.into()]));
        });
    }

    fn renumber(&mut self, name: &str, rvn: i64) -> i64 {
        let renumbered = self
            .table_to_write()
            .update(
                name,
                |row| row.rvn() == rvn,
                || Changes::new(self.draw_rvn()),
                true,
                |row| row.rvn(),
            )
            .unwrap_or_else(|| bug(format_args!("lock \"{name}\" vanished")));
        self.observe(name, Some(renumbered));
        renumbered
    }

    fn lock_name(&mut self, name: &str) {
        name_lock::lock(&self.name_lock_secret(), name);
        self.touch(name);
    }

    fn try_lock_name(&mut self, name: &str) -> bool {
        let locked = name_lock::try_lock(&self.name_lock_secret(), name);
        if locked {
            self.touch(name);
        }
        locked
    }

    fn unlock_name(&mut self, name: &str) {
        name_lock::unlock(&self.name_lock_secret(), name);
    }

    fn name_lock_key(&mut self, name: &str) -> u64 {
        name_lock::key(&self.name_lock_secret(), name)
    }
}

/// Waits run on the backend's monotonic clock, asleep on its latch.
impl Clock for Backend {
    fn now(&mut self) -> Duration {
        clock::now()
    }

    fn sleep_until(&mut self, wake: Duration) {
        pgrx::check_for_interrupts!();
        let now = clock::now();
        if now < wake {
            self.slept = true;
            clock::sleep(wake - now);
            pgrx::check_for_interrupts!();
        }
    }
}

// Fences (`pglock_fence`): the protocol's `Fencing`.  A fence takes the name's
// lock in share mode and share-locks the holder's row (the statement FENCE),
// both until the transaction ends.

impl Fencing for Backend {
    fn lock_name_shared(&mut self, name: &str) {
        name_lock::lock_shared(&self.name_lock_secret(), name);
        self.touch(name);
    }

    fn unlock_name_shared(&mut self, name: &str) {
        name_lock::unlock_shared(&self.name_lock_secret(), name);
    }

    /// A row lock is no write of the lock: no new RVN and no durable commit
    /// forced (the fenced transaction's own writes commit as its session says).
    fn fence(&mut self, holder: &Holder<'_>) -> Option<i64> {
        self.with_statements(|client, statements| {
            let args: [DatumWithOid; 4] = [
                holder.name.into(),
                holder.owner.into(),
                holder.rvn.into(),
                oid_of(holder.role).into(),
            ];
            let table = checked(client.select(statements.fence(client), None, &args));
            (!table.is_empty()).then(|| required(table.first().get(1)))
        })
    }
}
