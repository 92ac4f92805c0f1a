//! The heap and index calls of the locks table, as each PostgreSQL version
//! spells them (14 to 18): the one place their signatures differ.

use std::ptr;

use pgrx::pg_sys::{self, Datum};

/// Start an index scan; PostgreSQL 18 added an instrumentation argument.
///
/// # Safety
/// `heap` and `index` are open relations, the index on the heap, and
/// `snapshot` stays valid until the scan ends.
pub(super) unsafe fn begin_index_scan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
) -> pg_sys::IndexScanDesc {
    // SAFETY: as the caller guarantees.
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

/// Insert `tuple`, WAL-logged, toasted and counted as a statement's would be.
///
/// # Safety
/// `heap` is open for writing and `tuple` was formed with its descriptor.
pub(super) unsafe fn insert(heap: pg_sys::Relation, tuple: pg_sys::HeapTuple) {
    // SAFETY: as the caller guarantees; heap_insert copies the tuple to the page.
    unsafe { pg_sys::heap_insert(heap, tuple, command_id(), 0, ptr::null_mut()) }
}

/// Update the version at `old` to `tuple`, waiting for a transaction that has
/// the row locked only if `wait`; false if the row changed or was locked.
/// (PostgreSQL 16 moved the "indexes to update" flag from the tuple to an out
/// argument; [`heap_only`] reads the tuple's bit on every version.)
///
/// # Safety
/// `heap` is open for writing, `old` is the tid of a version visible to this
/// call's snapshot, `tuple` was formed with the heap's descriptor.
pub(super) unsafe fn update(
    heap: pg_sys::Relation,
    old: pg_sys::ItemPointerData,
    tuple: pg_sys::HeapTuple,
    wait: bool,
) -> bool {
    let mut old = old;
    let mut failure = pg_sys::TM_FailureData::default();
    let mut lock_mode: pg_sys::LockTupleMode::Type = 0;
    // SAFETY: as the caller guarantees.
    let result = unsafe {
        #[cfg(any(feature = "pg14", feature = "pg15"))]
        {
            pg_sys::heap_update(
                heap,
                &mut old,
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
                &mut old,
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
    result == pg_sys::TM_Result::TM_Ok
}

/// Delete the version at `tid`, waiting for a transaction that has the row
/// locked; false if the row changed meanwhile.
///
/// # Safety
/// As for [`update`].
pub(super) unsafe fn delete(heap: pg_sys::Relation, tid: pg_sys::ItemPointerData) -> bool {
    let mut tid = tid;
    let mut failure = pg_sys::TM_FailureData::default();
    // SAFETY: as the caller guarantees.
    let result = unsafe {
        pg_sys::heap_delete(
            heap,
            &mut tid,
            command_id(),
            ptr::null_mut(),
            true,
            &mut failure,
            false,
        )
    };
    result == pg_sys::TM_Result::TM_Ok
}

/// Point the primary key's entry for `name` at `tuple` (an insert, or an
/// update that could not stay on its page as a heap-only tuple).  The unique
/// check never finds a live conflict: every writer of a name holds its name
/// lock and inserts only after finding no version of it.
///
/// # Safety
/// `index` is the primary key of `heap`, both open for writing; `tuple` was
/// just written to `heap`, and `name` is its name column.
pub(super) unsafe fn index(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    name: Datum,
    tuple: pg_sys::HeapTuple,
) {
    let mut key = [name];
    let mut null = [false];
    // SAFETY: as the caller guarantees; the one key column is the name.
    unsafe {
        let info = pg_sys::BuildIndexInfo(index);
        pg_sys::index_insert(
            index,
            key.as_mut_ptr(),
            null.as_mut_ptr(),
            &mut (*tuple).t_self,
            heap,
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES,
            false,
            info,
        );
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        pg_sys::index_insert_cleanup(index, info);
    }
}

/// Whether an updated tuple stayed on its page as a heap-only tuple, reached
/// through the old version's index entry (no new index entry needed).
/// (PostgreSQL 18's headers make `HeapTupleHeaderIsHeapOnly` a function, the
/// others a macro: the bit is read here for every version alike.)
///
/// # Safety
/// `tuple` was just written, with its header.
pub(super) unsafe fn heap_only(tuple: pg_sys::HeapTuple) -> bool {
    // SAFETY: as the caller guarantees.
    unsafe { (*(*tuple).t_data).t_infomask2 & pg_sys::HEAP_ONLY_TUPLE as u16 != 0 }
}

fn command_id() -> pg_sys::CommandId {
    // SAFETY: the current command's id, marked as used by a write.
    unsafe { pg_sys::GetCurrentCommandId(true) }
}
