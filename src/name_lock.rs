//! The per-name lock: which heavyweight lock a lock name maps to.
//!
//! Every write to `pglock.locks` takes its name's lock first, so writes to one
//! name happen one at a time and each draws its RVN after the previous one
//! committed; reads never take it.  It is an advisory-style lock of the user lock
//! method, keyed by the database and a hash of the name, with a tag field no
//! `pg_advisory_lock` call can produce.

use pgrx::pg_sys;

use crate::ffi;

/// Marks pglock's own per-name locks apart from user advisory locks (which use 1 and 2).
const NAME_LOCK_TAG: u16 = 0x504c; // "PL"

/// Take this transaction's exclusive lock on `name`, held until it ends.
pub fn lock(name: &str) {
    ffi::lock_exclusive(&tag(name));
}

/// Give back one [`lock`] of `name` after a call that wrote nothing.  A lock taken
/// earlier in the transaction by a write that did happen stays held (the count
/// only drops by one).
pub fn unlock(name: &str) {
    ffi::unlock_exclusive(&tag(name));
}

fn tag(name: &str) -> pg_sys::LOCKTAG {
    let key = fnv1a_64(name.as_bytes());
    pg_sys::LOCKTAG {
        locktag_field1: ffi::database_id().to_u32(),
        locktag_field2: (key >> 32) as u32,
        locktag_field3: key as u32,
        locktag_field4: NAME_LOCK_TAG,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

/// FNV-1a: fixed and specified, so every backend and every pglock version agree
/// on which lock a name maps to.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a_64;

    #[test]
    fn name_hash_is_the_published_fnv1a() {
        // Reference values of 64-bit FNV-1a; a change would split the per-name lock
        // between backends running different pglock builds.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
