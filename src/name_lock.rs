//! The per-name lock: which heavyweight lock a lock name maps to.
//!
//! Every write to `pglock.locks` takes its name's lock first, so writes to one
//! name happen one at a time and each draws its RVN after the previous one
//! committed; reads never take it.  A fence takes it in share mode: writers wait
//! for the fence's transaction, other fences of the same lock do not.  It is an
//! advisory-style lock of the user lock method, keyed by the database and a
//! 64-bit hash of the name, with a tag field no `pg_advisory_lock` call can
//! produce.
//!
//! The hash is SipHash-2-4 keyed by a secret that each database's installation
//! draws at random (`pglock.name_lock_secret`, readable by no role but the
//! extension's owner).  With a public hash, another role could compute offline a
//! name whose lock collides with a victim's and hold it from its own open
//! transaction; with a secret key, finding one takes about 2^64 tries.

use pgrx::pg_sys;
use siphasher::sip::SipHasher24;

use crate::session;

/// Marks pglock's own per-name locks apart from user advisory locks (which use 1 and 2).
const NAME_LOCK_TAG: u16 = 0x504c; // "PL"

/// Take this transaction's exclusive lock on `name`, held until it ends,
/// waiting for it like any heavyweight lock (`lock_timeout`, cancel, deadlock
/// detection).
pub fn lock(secret: &[u8; 16], name: &str) {
    acquire(&tag(secret, name), EXCLUSIVE, true);
}

/// [`lock`] if no other transaction holds it; false instead of waiting.
pub fn try_lock(secret: &[u8; 16], name: &str) -> bool {
    acquire(&tag(secret, name), EXCLUSIVE, false)
}

/// Give back one [`lock`] of `name` after a call that wrote nothing.  A lock taken
/// earlier in the transaction by a write that did happen stays held (the count
/// only drops by one).
pub fn unlock(secret: &[u8; 16], name: &str) {
    release(&tag(secret, name), EXCLUSIVE);
}

/// Take this transaction's shared lock on `name`, held until it ends: other
/// transactions' [`lock`] waits for it (and [`try_lock`] fails), other shared
/// locks do not, and it waits behind exclusive requests already queued.  A
/// fence holds it.
pub fn lock_shared(secret: &[u8; 16], name: &str) {
    acquire(&tag(secret, name), SHARE, true);
}

/// Give back one [`lock_shared`] of `name`, after a fence that failed.
pub fn unlock_shared(secret: &[u8; 16], name: &str) {
    release(&tag(secret, name), SHARE);
}

/// The 64-bit key of `name`'s lock.
pub fn key(secret: &[u8; 16], name: &str) -> u64 {
    SipHasher24::new_with_key(secret).hash(name.as_bytes())
}

/// The 64-bit key of the queue of waiters for any slot of `semaphore`: the
/// same keyed hash over a text no lock name can be (it holds a NUL).
pub fn slots_key(secret: &[u8; 16], semaphore: &str) -> u64 {
    let mut hasher = SipHasher24::new_with_key(secret);
    std::hash::Hasher::write(&mut hasher, b"\0slots\0");
    std::hash::Hasher::write(&mut hasher, semaphore.as_bytes());
    std::hash::Hasher::finish(&hasher)
}

fn tag(secret: &[u8; 16], name: &str) -> pg_sys::LOCKTAG {
    let key = key(secret, name);
    pg_sys::LOCKTAG {
        locktag_field1: session::database_id().to_u32(),
        locktag_field2: (key >> 32) as u32,
        locktag_field3: key as u32,
        locktag_field4: NAME_LOCK_TAG,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

const EXCLUSIVE: pg_sys::LOCKMODE = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;
const SHARE: pg_sys::LOCKMODE = pg_sys::ShareLock as pg_sys::LOCKMODE;

/// A transaction lock on `tag` in `mode`; without `wait`, false if another
/// transaction holds a conflicting one.
fn acquire(tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE, wait: bool) -> bool {
    // SAFETY: `tag` is a fully initialised LOCKTAG of the user lock method; a
    // transaction lock (sessionLock = false) is released by the lock manager at
    // transaction end, also on error; with dontWait the call returns
    // LOCKACQUIRE_NOT_AVAIL instead of sleeping.
    let result = unsafe { pg_sys::LockAcquire(tag, mode, false, !wait) };
    result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// Give back one [`acquire`] of `tag` in `mode` by this transaction: its local
/// count drops by one.
fn release(tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE) {
    // SAFETY: as for `acquire`.
    unsafe {
        pg_sys::LockRelease(tag, mode, false);
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn the_key_is_siphash_2_4_and_depends_on_the_secret() {
        // The reference vector of SipHash-2-4 (key 00..0f, message 00..0e).
        let secret: [u8; 16] = std::array::from_fn(|i| i as u8);
        let message: Vec<u8> = (0..15).collect();
        let name = String::from_utf8(message).unwrap();
        assert_eq!(key(&secret, &name), 0xa129_ca61_49be_45e5);
        assert_ne!(key(&[0; 16], "job"), key(&[1; 16], "job"));
    }
}
