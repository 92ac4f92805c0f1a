//! The columns of `pglock.locks`, a row as read and the values of a row to write.

use std::marker::PhantomData;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::error::bug;

/// A column as sql/schema.sql declares it.
struct Column {
    pub name: &'static str,
    pub type_id: Oid,
    pub not_null: bool,
}

/// The columns of `pglock.locks`, in attribute order: the one list the row
/// code is written against (positions below are found in it by name), checked
/// whole against the table when its objects are found.
const COLUMNS: [Column; COUNT] = [
    column("name", pg_sys::TEXTOID, true),
    column("owner", pg_sys::TEXTOID, true),
    column("rvn", pg_sys::INT8OID, true),
    column("lease", pg_sys::INTERVALOID, true),
    column("data", pg_sys::BYTEAOID, false),
    column("released", pg_sys::BOOLOID, true),
    column("holder_role", pg_sys::REGROLEOID, true),
    column("updated_at", pg_sys::TIMESTAMPTZOID, true),
];
pub(super) const COUNT: usize = 8;

const NAME: usize = position("name");
const OWNER: usize = position("owner");
const RVN: usize = position("rvn");
const LEASE: usize = position("lease");
const DATA: usize = position("data");
const RELEASED: usize = position("released");
const HOLDER_ROLE: usize = position("holder_role");
const UPDATED_AT: usize = position("updated_at");

/// Whether a table's `descriptor` has exactly [`COLUMNS`] (names, types, NOT
/// NULL, in order); if not, what it has instead.
pub fn check_columns(descriptor: &pgrx::PgTupleDesc<'_>) -> Result<(), String> {
    let found: Vec<(String, Oid, bool)> = descriptor
        .iter()
        .map(|a| (a.name().to_owned(), a.atttypid, a.attnotnull))
        .collect();
    let expected: Vec<(String, Oid, bool)> = COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), c.type_id, c.not_null))
        .collect();
    if found == expected {
        return Ok(());
    }
    Err(format!("has columns {found:?}, not {expected:?}"))
}

const fn column(name: &'static str, type_id: Oid, not_null: bool) -> Column {
    Column {
        name,
        type_id,
        not_null,
    }
}

/// Where `name` is in [`COLUMNS`]; a name not there fails the build.
const fn position(name: &str) -> usize {
    let mut index = 0;
    while index < COUNT {
        if same(COLUMNS[index].name.as_bytes(), name.as_bytes()) {
            return index;
        }
        index += 1;
    }
    panic!("no such column in pglock.locks")
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// One row version as read: its datums point into the buffer that the scan
/// holding `'slot` keeps pinned, so the row cannot outlive the scan.
pub struct Row<'slot> {
    pub(super) tid: pg_sys::ItemPointerData,
    pub(super) values: [Datum; COUNT],
    pub(super) nulls: [bool; COUNT],
    pub(super) pinned: PhantomData<&'slot pg_sys::TupleTableSlot>,
}

impl<'slot> Row<'slot> {
    /// Every column of the tuple in `slot`.
    ///
    /// # Safety
    /// `slot` holds a heap tuple of `pglock.locks` (whose descriptor has the
    /// attributes of [`COLUMNS`], checked when the objects were found) and
    /// stays valid, its buffer pinned, for `'slot`.
    pub(super) unsafe fn deform(slot: *mut pg_sys::TupleTableSlot) -> Row<'slot> {
        let mut values = [Datum::from(0usize); COUNT];
        let mut nulls = [true; COUNT];
        // SAFETY: as the caller guarantees; the datums point into the pinned buffer.
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
                pinned: PhantomData,
            }
        }
    }

    /// The owner label, without copying it out of the row.
    pub fn owner(&self) -> &str {
        self.text(OWNER)
    }

    pub fn rvn(&self) -> i64 {
        self.values[RVN].value() as i64
    }

    pub fn lease(&self) -> Interval {
        // SAFETY: an interval datum (NOT NULL, checked); pgrx copies the struct.
        unsafe { Interval::from_polymorphic_datum(self.values[LEASE], false, pg_sys::INTERVALOID) }
            .unwrap_or_else(|| bug("a lease read as NULL"))
    }

    pub fn data(&self) -> Option<Vec<u8>> {
        // SAFETY: a bytea datum or NULL; pgrx detoasts and copies it.
        unsafe {
            Vec::<u8>::from_polymorphic_datum(self.values[DATA], self.nulls[DATA], pg_sys::BYTEAOID)
        }
    }

    pub fn released(&self) -> bool {
        self.values[RELEASED].value() != 0
    }

    pub fn holder_role(&self) -> Oid {
        Oid::from(self.values[HOLDER_ROLE].value() as u32)
    }

    /// A NOT NULL text column, borrowed: from the buffer, or from a detoasted
    /// copy in the call's memory context, which outlives the row.
    fn text(&self, column: usize) -> &str {
        // SAFETY: a non-NULL text datum (NOT NULL, checked); detoasting returns
        // it as it is when it is inline, or a palloc'd plain copy otherwise.
        let bytes = unsafe {
            let plain = pg_sys::pg_detoast_datum_packed(self.values[column].cast_mut_ptr());
            pgrx::varlena::varlena_to_byte_slice(plain)
        };
        // The database's encoding is UTF-8 (sql/schema.sql refuses any other).
        std::str::from_utf8(bytes).unwrap_or_else(|_| bug("a text column is not UTF-8"))
    }
}

/// A column of a row to write: what it was, or a new value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Keep,
    Set(Datum),
    SetNull,
}

/// The new values of a row, column by column.
pub struct Changes {
    values: [Value; COUNT],
}

impl Changes {
    /// Everything kept but the RVN (always new) and the time of the write.
    pub fn new(rvn: i64) -> Changes {
        let mut values = [Value::Keep; COUNT];
        values[RVN] = Value::Set(Datum::from(rvn));
        values[UPDATED_AT] = Value::Set(now());
        Changes { values }
    }

    pub fn owner(mut self, owner: &str) -> Self {
        self.values[OWNER] = Value::Set(varlena(owner.as_bytes()));
        self
    }

    pub fn lease(mut self, lease: Interval) -> Self {
        self.values[LEASE] = Value::Set(interval(lease));
        self
    }

    pub fn data(mut self, data: Option<&[u8]>) -> Self {
        self.values[DATA] = data.map_or(Value::SetNull, |bytes| Value::Set(varlena(bytes)));
        self
    }

    pub fn released(mut self, released: bool) -> Self {
        self.values[RELEASED] = Value::Set(Datum::from(released));
        self
    }

    pub fn holder_role(mut self, role: Oid) -> Self {
        self.values[HOLDER_ROLE] = Value::Set(Datum::from(role));
        self
    }

    /// The values and nulls of `row` with these changes made.
    pub(super) fn applied_to(&self, row: &Row<'_>) -> ([Datum; COUNT], [bool; COUNT]) {
        let (mut values, mut nulls) = (row.values, row.nulls);
        for (index, value) in self.values.iter().enumerate() {
            match value {
                Value::Keep => {}
                Value::Set(datum) => (values[index], nulls[index]) = (*datum, false),
                Value::SetNull => nulls[index] = true,
            }
        }
        (values, nulls)
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

impl NewRow<'_> {
    /// Its values and nulls, with `rvn`.
    pub(super) fn values(&self, rvn: i64) -> ([Datum; COUNT], [bool; COUNT]) {
        let mut values = [Datum::from(0usize); COUNT];
        let mut nulls = [false; COUNT];
        values[NAME] = varlena(self.name.as_bytes());
        values[OWNER] = varlena(self.owner.as_bytes());
        values[RVN] = Datum::from(rvn);
        values[LEASE] = interval(self.lease);
        match self.data {
            Some(data) => values[DATA] = varlena(data),
            None => nulls[DATA] = true,
        }
        values[RELEASED] = Datum::from(false);
        values[HOLDER_ROLE] = Datum::from(self.holder_role);
        values[UPDATED_AT] = now();
        (values, nulls)
    }
}

/// The name column's datum among a row's values.
pub(super) fn name_of(values: &[Datum; COUNT]) -> Datum {
    values[NAME]
}

/// A `text` or `bytea` datum (the same varlena) holding `bytes`, allocated in
/// the current memory context.
pub(super) fn varlena(bytes: &[u8]) -> Datum {
    let length = i32::try_from(bytes.len()).unwrap_or_else(|_| bug("a value of 2 GB or more"));
    // SAFETY: copies `bytes` into a new varlena of that length.
    Datum::from(unsafe { pg_sys::cstring_to_text_with_len(bytes.as_ptr().cast(), length) })
}

/// An interval datum, allocated in the current memory context.
fn interval(lease: Interval) -> Datum {
    lease
        .into_datum()
        .unwrap_or_else(|| bug("an interval became NULL"))
}

/// The server's clock now, as a timestamptz datum (`clock_timestamp()`).
fn now() -> Datum {
    // SAFETY: reads the system clock.
    Datum::from(unsafe { pg_sys::GetCurrentTimestamp() })
}
