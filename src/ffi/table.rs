//! `pglock.locks` through PostgreSQL's table and index access methods: the
//! lookups and writes of the hot path, without SPI, the planner or the executor.
//!
//! Each operation does what its SQL statement did, in the same order: find the
//! row version visible to a fresh snapshot through the primary key, check the
//! statement's condition, draw an RVN, then insert, update or delete with the
//! heap access method, which WAL-logs, toasts, counts statistics and takes row
//! locks as a statement would, and keep the primary key up to date.  A row
//! another transaction is updating is waited for (or, when asked, skipped); a
//! row that changed meanwhile matches nothing, as the statement's re-checked
//! condition would.  There are no triggers, policies or constraints to run:
//! pglock owns the table, row-level security does not apply to its owner, and
//! the values written are checked before they get here.

use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::ptr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

/// The objects of one installation of pglock, as this backend found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objects {
    pub locks: Oid,
    pub primary_key: Oid,
    pub rvn_seq: Oid,
    pub owner: Oid,
    pub secret: Oid,
}

impl Objects {
    /// pglock's objects in this database, or `None` if the extension's SQL is
    /// of another version than this library (not yet updated).  Found once and
    /// kept until PostgreSQL invalidates the cached definition of any relation
    /// (a DROP, an owner change, ...), which drops them.
    pub fn current() -> Option<Objects> {
        thread_local! {
            static FOUND: std::cell::Cell<Option<Objects>> = const { std::cell::Cell::new(None) };
        }
        if let Some(objects) = FOUND.get() {
            return Some(objects);
        }
        let objects = Objects::find()?;
        FOUND.set(Some(objects));
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        REGISTERED.call_once(|| {
            unsafe extern "C-unwind" fn forget(_arg: Datum, _relid: Oid) {
                FOUND.set(None);
            }
            // SAFETY: registers a plain function for the backend's life; it only
            // clears a thread-local (backends are single-threaded).
            unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget), Datum::from(0usize)) };
        });
        Some(objects)
    }

    fn find() -> Option<Objects> {
        if installed_version().as_deref() != Some(env!("CARGO_PKG_VERSION")) {
            return None;
        }
        let secret = super::relation_id(c"pglock", c"name_lock_secret")?;
        let locks = super::relation_id(c"pglock", c"locks")?;
        let objects = Objects {
            locks,
            primary_key: super::relation_id(c"pglock", c"locks_pkey")?,
            rvn_seq: super::relation_id(c"pglock", c"rvn_seq")?,
            owner: super::relation_owner(locks)?,
            secret,
        };
        objects.check_columns();
        Some(objects)
    }

    /// The hot path writes tuples column by column: make sure the table is the
    /// one it was written for.
    fn check_columns(&self) {
        const NAMES: [&str; column::COUNT] = [
            "name",
            "owner",
            "rvn",
            "lease",
            "data",
            "released",
            "holder_role",
            "updated_at",
        ];
        let table = LocksTable::open(self, false);
        // SAFETY: the descriptor of the open table, valid while it is open.
        let descriptor = unsafe { pgrx::PgTupleDesc::from_pg_unchecked((*table.heap).rd_att) };
        let names: Vec<String> = descriptor
            .iter()
            .map(|attribute| attribute.name().to_owned())
            .collect();
        if names != NAMES {
            pgrx::error!("pglock: pglock.locks has columns {names:?}, not {NAMES:?}");
        }
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

/// Columns of `pglock.locks`, by attribute number (sql/schema.sql).
mod column {
    pub const NAME: usize = 0;
    pub const OWNER: usize = 1;
    pub const RVN: usize = 2;
    pub const LEASE: usize = 3;
    pub const DATA: usize = 4;
    pub const RELEASED: usize = 5;
    pub const HOLDER_ROLE: usize = 6;
    pub const UPDATED_AT: usize = 7;
    pub const COUNT: usize = 8;
}

/// One row version as read, its datums still pointing into the buffer the
/// scan holds pinned.
pub struct Row {
    tid: pg_sys::ItemPointerData,
    values: [Datum; column::COUNT],
    nulls: [bool; column::COUNT],
}

impl Row {
    pub fn owner(&self) -> String {
        self.text(column::OWNER)
    }

    pub fn rvn(&self) -> i64 {
        self.values[column::RVN].value() as i64
    }

    pub fn lease(&self) -> Interval {
        // SAFETY: a NOT NULL interval column; pgrx copies the struct.
        unsafe {
            Interval::from_polymorphic_datum(self.values[column::LEASE], false, pg_sys::INTERVALOID)
        }
        .expect("lease is NOT NULL")
    }

    pub fn data(&self) -> Option<Vec<u8>> {
        // SAFETY: a bytea datum or NULL; pgrx detoasts and copies it.
        unsafe {
            Vec::<u8>::from_polymorphic_datum(
                self.values[column::DATA],
                self.nulls[column::DATA],
                pg_sys::BYTEAOID,
            )
        }
    }

    pub fn released(&self) -> bool {
        self.values[column::RELEASED].value() != 0
    }

    pub fn holder_role(&self) -> Oid {
        Oid::from(self.values[column::HOLDER_ROLE].value() as u32)
    }

    fn text(&self, column: usize) -> String {
        // SAFETY: a NOT NULL text column; pgrx detoasts and copies it.
        unsafe { String::from_polymorphic_datum(self.values[column], false, pg_sys::TEXTOID) }
            .expect("text columns are NOT NULL")
    }
}

/// A column of a row to write: what it was, or a new value.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Keep,
    Set(Datum),
    SetNull,
}

/// The new values of a row, column by column.
pub struct Changes {
    values: [Value; column::COUNT],
}

impl Changes {
    /// Everything kept but the RVN (always new) and the time of the write.
    pub fn new(rvn: i64) -> Changes {
        let mut values = [Value::Keep; column::COUNT];
        values[column::RVN] = Value::Set(Datum::from(rvn));
        values[column::UPDATED_AT] = Value::Set(now());
        Changes { values }
    }

    pub fn owner(mut self, owner: &str) -> Self {
        self.values[column::OWNER] = Value::Set(text(owner.as_bytes()));
        self
    }

    pub fn lease(mut self, lease: Interval) -> Self {
        self.values[column::LEASE] = Value::Set(interval(lease));
        self
    }

    pub fn data(mut self, data: Option<&[u8]>) -> Self {
        self.values[column::DATA] = data.map_or(Value::SetNull, |bytes| Value::Set(text(bytes)));
        self
    }

    pub fn released(mut self, released: bool) -> Self {
        self.values[column::RELEASED] = Value::Set(Datum::from(released));
        self
    }

    pub fn holder_role(mut self, role: Oid) -> Self {
        self.values[column::HOLDER_ROLE] = Value::Set(Datum::from(role));
        self
    }
}

/// A new row.
pub struct NewRow<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub lease: Interval,
    pub data: Option<&'a [u8]>,
    pub holder_role: Oid,
}

/// How an update or delete ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// No visible row matched the condition, or the row changed before the
    /// write (another transaction updated or deleted it).
    NoMatch,
}

/// `pglock.locks` and its primary key, open for one call.  Locks taken on them
/// are kept to the end of the transaction, as the executor keeps them.
pub struct LocksTable {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
}

impl LocksTable {
    /// Open the table to read, or to write.
    pub fn open(objects: &Objects, write: bool) -> LocksTable {
        let mode = if write {
            pg_sys::RowExclusiveLock
        } else {
            pg_sys::AccessShareLock
        } as pg_sys::LOCKMODE;
        // SAFETY: OIDs of an existing table and index (resolved this call or
        // kept valid by the relcache callback that forgets them); the locks
        // taken here stay until the transaction ends.
        unsafe {
            LocksTable {
                heap: pg_sys::table_open(objects.locks, mode),
                index: pg_sys::index_open(objects.primary_key, mode),
            }
        }
    }

    /// The row version of `name` visible to a fresh snapshot (under READ
    /// COMMITTED; the transaction's under REPEATABLE READ), and what `f` makes of
    /// it while its buffer is pinned.
    pub fn find<R>(&self, name: &str, f: impl FnOnce(Option<&Row>) -> R) -> R {
        // SAFETY: GetTransactionSnapshot returns a valid snapshot, which
        // PushActiveSnapshot copies and keeps until PopActiveSnapshot.
        unsafe {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            let result = self.scan(name, pg_sys::GetActiveSnapshot(), f);
            pg_sys::PopActiveSnapshot();
            result
        }
    }

    /// Scan the primary key for `name` with `snapshot`; `f` sees the first
    /// visible version (there is at most one).
    unsafe fn scan<R>(
        &self,
        name: &str,
        snapshot: pg_sys::Snapshot,
        f: impl FnOnce(Option<&Row>) -> R,
    ) -> R {
        // SAFETY: an index scan over open relations with a valid snapshot; the
        // key's text datum lives in this call's memory context; the slot is
        // dropped (unpinning the buffer) after `f` returned.
        unsafe {
            let key_text = text(name.as_bytes());
            let mut key = MaybeUninit::<pg_sys::ScanKeyData>::zeroed();
            pg_sys::ScanKeyEntryInitialize(
                key.as_mut_ptr(),
                0,
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                Oid::INVALID,
                *(*self.index).rd_indcollation,
                Oid::from(pg_sys::F_TEXTEQ),
                key_text,
            );
            let scan = begin_index_scan(self.heap, self.index, snapshot);
            pg_sys::index_rescan(scan, key.as_mut_ptr(), 1, ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(self.heap, ptr::null_mut());
            let found =
                pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            let result = if found {
                f(Some(&deform(slot)))
            } else {
                f(None)
            };
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
            result
        }
    }

    /// Whether any version of `name` exists that a new row would conflict
    /// with: committed, or written by a transaction still in progress.
    fn exists_any(&self, name: &str) -> bool {
        let mut dirty = pg_sys::SnapshotData {
            snapshot_type: pg_sys::SnapshotType::SNAPSHOT_DIRTY,
            ..Default::default()
        };
        // SAFETY: a dirty snapshot needs no registration; it lives on this stack
        // frame for the whole scan.
        unsafe { self.scan(name, &mut dirty, |row| row.is_some()) }
    }

    /// Insert `row` with `draw_rvn`'s RVN unless the name exists after all
    /// (created meanwhile by a transaction that has committed): the
    /// statement's ON CONFLICT DO NOTHING.  The name's lock is held, so no
    /// other writer of it is in progress and the check cannot go stale.  (An
    /// optimistic insert that deleted its row again on a conflict would leave a
    /// row the next inserter's unique check counts until this transaction ends.)
    pub fn insert(&self, row: &NewRow<'_>, draw_rvn: impl FnOnce() -> i64) -> Option<i64> {
        if self.exists_any(row.name) {
            return None;
        }
        let rvn = draw_rvn();
        let mut values = [Datum::from(0usize); column::COUNT];
        let mut nulls = [false; column::COUNT];
        values[column::NAME] = text(row.name.as_bytes());
        values[column::OWNER] = text(row.owner.as_bytes());
        values[column::RVN] = Datum::from(rvn);
        values[column::LEASE] = interval(row.lease);
        match row.data {
            Some(data) => values[column::DATA] = text(data),
            None => nulls[column::DATA] = true,
        }
        values[column::RELEASED] = Datum::from(false);
        values[column::HOLDER_ROLE] = Datum::from(row.holder_role);
        values[column::UPDATED_AT] = now();
        // SAFETY: values and nulls match the table's descriptor (checked when the
        // objects were resolved); heap_insert copies the tuple to the page.
        unsafe {
            let tuple = pg_sys::heap_form_tuple(
                (*self.heap).rd_att,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
            pg_sys::heap_insert(self.heap, tuple, command_id(), 0, ptr::null_mut());
            self.index_new_version(values[column::NAME], tuple);
            pg_sys::CommandCounterIncrement();
        }
        Some(rvn)
    }

    /// Update the visible row of `name` if `matches` accepts it: the columns
    /// `change` gives (after `draw_rvn`), the others as they were.  Waits for a
    /// transaction that has the row locked, unless `wait_for_row` is false: then
    /// such a row matches nothing.  `f` sees the row as written.
    pub fn update<R>(
        &self,
        name: &str,
        matches: impl FnOnce(&Row) -> bool,
        change: impl FnOnce() -> Changes,
        wait_for_row: bool,
        f: impl FnOnce(&Row) -> R,
    ) -> Option<R> {
        self.find(name, |row| {
            let row = row.filter(|row| matches(row))?;
            let changes = change();
            let mut values = row.values;
            let mut nulls = row.nulls;
            for (index, value) in changes.values.iter().enumerate() {
                match value {
                    Value::Keep => {}
                    Value::Set(datum) => (values[index], nulls[index]) = (*datum, false),
                    Value::SetNull => nulls[index] = true,
                }
            }
            // SAFETY: the old row is pinned by the scan's slot while the new tuple
            // is formed from its datums (a kept toasted value is carried over
            // as the same toast pointer) and written.
            unsafe {
                let tuple = pg_sys::heap_form_tuple(
                    (*self.heap).rd_att,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                );
                let mut old = row.tid;
                if update_tuple(self.heap, &mut old, tuple, wait_for_row) == Written::NoMatch {
                    return None;
                }
                if !heap_only(tuple) {
                    self.index_new_version(values[column::NAME], tuple);
                }
                pg_sys::CommandCounterIncrement();
                let written = Row {
                    tid: (*tuple).t_self,
                    values,
                    nulls,
                };
                Some(f(&written))
            }
        })
    }

    /// Delete the visible row of `name` if `matches` accepts it, waiting for a
    /// transaction that has it locked.
    pub fn delete(&self, name: &str, matches: impl FnOnce(&Row) -> bool) -> Written {
        self.find(name, |row| {
            let Some(row) = row.filter(|row| matches(row)) else {
                return Written::NoMatch;
            };
            let mut tid = row.tid;
            let mut failure = pg_sys::TM_FailureData::default();
            // SAFETY: the tid of the version just found, in the open table.
            let result = unsafe {
                pg_sys::heap_delete(
                    self.heap,
                    &mut tid,
                    command_id(),
                    ptr::null_mut(),
                    true,
                    &mut failure,
                    false,
                )
            };
            if result != pg_sys::TM_Result::TM_Ok {
                return Written::NoMatch;
            }
            // SAFETY: makes the delete visible to this transaction's next reads.
            unsafe { pg_sys::CommandCounterIncrement() };
            Written::Done
        })
    }

    /// Point the primary key at a new row version (an insert, or an update that
    /// could not stay on its page as a heap-only tuple).
    unsafe fn index_new_version(&self, name: Datum, tuple: pg_sys::HeapTuple) {
        let mut key = [name];
        let mut null = [false];
        // SAFETY: the one key column of the primary key is the name.  Every
        // writer of a name holds its name lock and inserts only after
        // `exists_any`, so the unique check never finds a live conflict.
        unsafe {
            let info = pg_sys::BuildIndexInfo(self.index);
            pg_sys::index_insert(
                self.index,
                key.as_mut_ptr(),
                null.as_mut_ptr(),
                &mut (*tuple).t_self,
                self.heap,
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES,
                false,
                info,
            );
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            pg_sys::index_insert_cleanup(self.index, info);
        }
    }
}

impl Drop for LocksTable {
    fn drop(&mut self) {
        // SAFETY: closes the relations opened in `open`, keeping their locks to
        // the end of the transaction (NoLock).
        unsafe {
            pg_sys::index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(self.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// Read every column of the tuple in `slot`.
unsafe fn deform(slot: *mut pg_sys::TupleTableSlot) -> Row {
    let mut values = [Datum::from(0usize); column::COUNT];
    let mut nulls = [true; column::COUNT];
    // SAFETY: the slot holds a heap tuple of pglock.locks, whose descriptor has
    // exactly `column::COUNT` attributes (checked when the objects were
    // resolved); the datums point into the pinned buffer.
    unsafe {
        let mut should_free = false;
        let tuple = pg_sys::ExecFetchSlotHeapTuple(slot, false, &mut should_free);
        pg_sys::heap_deform_tuple(
            tuple,
            (*slot).tts_tupleDescriptor,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        Row {
            tid: (*tuple).t_self,
            values,
            nulls,
        }
    }
}

/// Update `old` to `tuple`; PostgreSQL 16 moved the "indexes to update" flag
/// from the tuple to an out argument, read by the caller through the tuple's
/// heap-only bit on every version.
unsafe fn update_tuple(
    heap: pg_sys::Relation,
    old: &mut pg_sys::ItemPointerData,
    tuple: pg_sys::HeapTuple,
    wait: bool,
) -> Written {
    let mut failure = pg_sys::TM_FailureData::default();
    let mut lock_mode: pg_sys::LockTupleMode::Type = 0;
    // SAFETY: `old` is the tid of a visible version of the open table, `tuple`
    // a freshly formed tuple of its descriptor.
    let result = unsafe {
        #[cfg(any(feature = "pg14", feature = "pg15"))]
        {
            pg_sys::heap_update(
                heap,
                old,
                tuple,
                command_id(),
                ptr::null_mut(),
                wait,
                &mut failure,
                &mut lock_mode,
            )
        }
        #[cfg(not(any(feature = "pg14", feature = "pg15")))]
        {
            let mut update_indexes: pg_sys::TU_UpdateIndexes::Type = 0;
            pg_sys::heap_update(
                heap,
                old,
                tuple,
                command_id(),
                ptr::null_mut(),
                wait,
                &mut failure,
                &mut lock_mode,
                &mut update_indexes,
            )
        }
    };
    match result {
        pg_sys::TM_Result::TM_Ok => Written::Done,
        _ => Written::NoMatch,
    }
}

/// Start an index scan; PostgreSQL 18 added an instrumentation argument.
unsafe fn begin_index_scan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
) -> pg_sys::IndexScanDesc {
    // SAFETY: open relations and a snapshot valid for the scan's life.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        {
            pg_sys::index_beginscan(heap, index, snapshot, 1, 0)
        }
        #[cfg(feature = "pg18")]
        {
            pg_sys::index_beginscan(heap, index, snapshot, ptr::null_mut(), 1, 0)
        }
    }
}

/// Whether an updated tuple stayed on its page as a heap-only tuple, reached
/// through the old version's index entry (no new index entry needed).
/// (PostgreSQL 18's headers make `HeapTupleHeaderIsHeapOnly` a function, the
/// others a macro: the bit is read here for every version alike.)
unsafe fn heap_only(tuple: pg_sys::HeapTuple) -> bool {
    // SAFETY: a tuple just written, with its header.
    unsafe { (*(*tuple).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0 }
}

fn command_id() -> pg_sys::CommandId {
    // SAFETY: the current command's id, marked as used by a write.
    unsafe { pg_sys::GetCurrentCommandId(true) }
}

/// The server's clock now, as a timestamptz datum (`clock_timestamp()`).
fn now() -> Datum {
    // SAFETY: reads the system clock.
    Datum::from(unsafe { pg_sys::GetCurrentTimestamp() })
}

/// A text or bytea datum holding `bytes`, allocated in the current context.
fn text(bytes: &[u8]) -> Datum {
    // SAFETY: copies `bytes` into a new varlena of that length.
    let varlena =
        unsafe { pg_sys::cstring_to_text_with_len(bytes.as_ptr().cast(), bytes.len() as c_int) };
    Datum::from(varlena)
}

/// An interval datum, allocated in the current context.
fn interval(lease: Interval) -> Datum {
    lease.into_datum().expect("an interval is never NULL")
}
