//! The requests the tests make: the plainest of each kind, which a test varies
//! with `..` where it matters (a lease, data, an observed RVN, `keep`).

use super::memory::lease_secs;
use crate::steps::{AcquireRequest, FenceRequest, HeartbeatRequest, ReleaseRequest};

/// A 20-second acquire, no data, nothing observed.
pub fn acquire_of<'a>(name: &'a str, owner: &'a str) -> AcquireRequest<'a> {
    AcquireRequest {
        name,
        owner,
        lease: lease_secs(20),
        data: None,
        replace_data: false,
        observed_rvn: None,
    }
}

/// A heartbeat that keeps the data and the lease.
pub fn heartbeat_of<'a>(name: &'a str, owner: &'a str, rvn: i64) -> HeartbeatRequest<'a> {
    HeartbeatRequest {
        name,
        owner,
        rvn,
        data: None,
        replace_data: false,
        lease: None,
    }
}

/// A release that deletes the lock.
pub fn release_of<'a>(name: &'a str, owner: &'a str, rvn: i64) -> ReleaseRequest<'a> {
    ReleaseRequest {
        name,
        owner,
        rvn,
        keep: false,
        data: None,
    }
}

pub fn fence_of<'a>(name: &'a str, owner: &'a str, rvn: i64) -> FenceRequest<'a> {
    FenceRequest { name, owner, rvn }
}
