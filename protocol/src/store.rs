//! What the protocol needs from where locks are kept.
//!
//! The extension implements it over SPI on `pglock.locks`; the tests implement it
//! in memory.  Reads never lock anything.  Every write names in its own condition
//! what the decision before it assumed (the RVN it expects, the exact holder), so
//! a write that lost a race matches nothing and returns `None` or `false` instead
//! of overwriting the winner.

use crate::lock::{Claim, DataChange, Holder, Lock, RoleId};

pub trait Store {
    /// The role the current call acts as.
    fn caller(&mut self) -> RoleId;

    /// The lock `name` as last committed (as this transaction may see it).
    fn read(&mut self, name: &str) -> Option<Lock>;

    /// Insert a new lock with a new RVN; `None` if the name exists after all.
    fn insert(&mut self, claim: &Claim<'_>, data: Option<&[u8]>) -> Option<i64>;

    /// Give the lock to `claim` with a new RVN if its RVN is still `expected_rvn`;
    /// the new RVN and the data now stored, or `None` if the lock changed.
    fn take_over(
        &mut self,
        claim: &Claim<'_>,
        expected_rvn: i64,
        data: DataChange<'_>,
    ) -> Option<(i64, Option<Vec<u8>>)>;

    /// Renew the lease of exactly `holder` (not released) with a new RVN, and the
    /// lease if given; the new RVN, or `None` if `holder` does not hold the lock.
    fn heartbeat(
        &mut self,
        holder: &Holder<'_>,
        data: DataChange<'_>,
        lease: Option<&crate::lock::Lease>,
    ) -> Option<i64>;

    /// Release the lock held by exactly `holder`: delete it, or with `keep` mark
    /// it released with a new RVN (data replaced unless `None`).  False if not held.
    fn release(&mut self, holder: &Holder<'_>, keep: bool, data: Option<&[u8]>) -> bool;

    /// Every lock `owner` holds for `role`, as `(name, rvn)`.
    fn held_by(&mut self, owner: &str, role: RoleId) -> Vec<(String, i64)>;

    /// Take this transaction's exclusive lock on the name, until it ends.  Writes to
    /// one name thus happen one at a time, each drawing its RVN after the last
    /// committed, and a read made under it sees every earlier writer committed.
    fn lock_name(&mut self, name: &str);

    /// Give back one `lock_name` of this transaction, after a call that wrote nothing.
    fn unlock_name(&mut self, name: &str);
}
