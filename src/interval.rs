//! PostgreSQL intervals as the protocol's leases, and back.

use pglock_protocol::Lease;
use pgrx::prelude::Interval;

use crate::ffi;

pub fn lease_of(interval: Interval) -> Lease {
    Lease {
        months: interval.months(),
        days: interval.days(),
        micros: interval.micros(),
    }
}

pub fn interval_of(lease: &Lease) -> Interval {
    ffi::interval(lease.months, lease.days, lease.micros)
}
