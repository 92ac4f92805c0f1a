//! PostgreSQL intervals as the protocol's leases, and back.

use pglock_protocol::Lease;
use pgrx::prelude::Interval;

use pgrx::pg_sys;
use pgrx::prelude::FromDatum;

use crate::error::bug;

pub fn lease_of(interval: Interval) -> Lease {
    Lease {
        months: interval.months(),
        days: interval.days(),
        micros: interval.micros(),
    }
}

pub fn interval_of(lease: &Lease) -> Interval {
    interval(lease.months, lease.days, lease.micros)
}

/// An `interval` from its three fields, whatever their signs: PostgreSQL allows
/// mixed signs (`1 mon -29 days`), which `Interval::new` refuses.
fn interval(months: i32, days: i32, micros: i64) -> Interval {
    let raw = pg_sys::Interval {
        time: micros,
        day: days,
        month: months,
    };
    // SAFETY: an interval datum is a pointer to a pg_sys::Interval; pgrx copies
    // the struct out of it, and `raw` outlives the call.
    unsafe {
        Interval::from_polymorphic_datum(
            pg_sys::Datum::from(&raw as *const pg_sys::Interval),
            false,
            pg_sys::INTERVALOID,
        )
    }
    .unwrap_or_else(|| bug("a non-null datum gave no interval"))
}
