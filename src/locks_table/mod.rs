//! `pglock.locks`, the table pglock owns (declared in sql/schema.sql), through
//! PostgreSQL's table and index access methods: the lookups and writes of the
//! hot path, without SPI, the planner or the executor.
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
//!
//! - `objects`: the table, its index, sequence and secret, found once per backend
//! - `row`: the columns, a row as read and the values of a row to write
//! - `heap`: the heap and index calls, as each PostgreSQL version spells them

mod heap;
mod objects;
mod row;

use std::mem::MaybeUninit;
use std::ptr;

use pgrx::pg_sys::{self, Oid};

pub use objects::Objects;
#[cfg(any(test, feature = "pg_test"))]
pub use row::check_columns;
pub use row::{Changes, NewRow, Row};

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
    pub fn find<R>(&self, name: &str, f: impl FnOnce(Option<&Row<'_>>) -> R) -> R {
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
    ///
    /// # Safety
    /// `snapshot` stays valid until the call returns.
    unsafe fn scan<R>(
        &self,
        name: &str,
        snapshot: pg_sys::Snapshot,
        f: impl FnOnce(Option<&Row<'_>>) -> R,
    ) -> R {
        // SAFETY: an index scan over open relations with a valid snapshot; the
        // key's text datum lives in this call's memory context; the row borrows
        // the slot, dropped (unpinning the buffer) only after `f` returned.
        unsafe {
            let key_text = row::varlena(name.as_bytes());
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
            let scan = heap::begin_index_scan(self.heap, self.index, snapshot);
            pg_sys::index_rescan(scan, key.as_mut_ptr(), 1, ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(self.heap, ptr::null_mut());
            let found =
                pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            let result = if found {
                f(Some(&Row::deform(slot)))
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
        let (mut values, mut nulls) = row.values(rvn);
        // SAFETY: values and nulls match the table's descriptor (checked when the
        // objects were found); the table and index are open for writing.
        unsafe {
            let tuple = pg_sys::heap_form_tuple(
                (*self.heap).rd_att,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
            heap::insert(self.heap, tuple);
            heap::index(self.heap, self.index, row::name_of(&values), tuple);
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
        matches: impl FnOnce(&Row<'_>) -> bool,
        change: impl FnOnce() -> Changes,
        wait_for_row: bool,
        f: impl FnOnce(&Row<'_>) -> R,
    ) -> Option<R> {
        self.find(name, |row| {
            let row = row.filter(|row| matches(row))?;
            let (mut values, mut nulls) = change().applied_to(row);
            // SAFETY: the old row is pinned by the scan's slot while the new tuple
            // is formed from its datums (a kept toasted value is carried over
            // as the same toast pointer) and written; its tid is of a version
            // visible to the scan's snapshot.
            unsafe {
                let tuple = pg_sys::heap_form_tuple(
                    (*self.heap).rd_att,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                );
                if !heap::update(self.heap, row.tid, tuple, wait_for_row) {
                    return None;
                }
                if !heap::heap_only(tuple) {
                    heap::index(self.heap, self.index, row::name_of(&values), tuple);
                }
                pg_sys::CommandCounterIncrement();
                let written = Row {
                    tid: (*tuple).t_self,
                    values,
                    nulls,
                    pinned: row.pinned,
                };
                Some(f(&written))
            }
        })
    }

    /// Delete the visible row of `name` if `matches` accepts it, waiting for a
    /// transaction that has it locked; false if none matched, or the row
    /// changed before the delete (another transaction updated or deleted it).
    pub fn delete(&self, name: &str, matches: impl FnOnce(&Row<'_>) -> bool) -> bool {
        self.find(name, |row| {
            let Some(row) = row.filter(|row| matches(row)) else {
                return false;
            };
            // SAFETY: the tid of the version just found, in the open table.
            if !unsafe { heap::delete(self.heap, row.tid) } {
                return false;
            }
            // SAFETY: makes the delete visible to this transaction's next reads.
            unsafe { pg_sys::CommandCounterIncrement() };
            true
        })
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
