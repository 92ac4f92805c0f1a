//! What the protocol needs from where locks are kept.
//!
//! The extension implements it over SPI on `pglock.locks`; the tests implement it
//! in memory.  Reads never lock anything.  Every write names in its own condition
//! what the decision before it assumed (the RVN it expects, the exact holder), so
//! a write that lost a race matches nothing and returns `None` instead of
//! overwriting the winner.  Every write draws a new RVN from one sequence.

use std::time::Duration;

use crate::lock::{Claim, DataChange, Heir, Holder, Lease, Lock, Released, RoleId};

/// Which columns a read needs: a waiting poll decides without the data, which
/// may be a megabyte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    WithData,
    WithoutData,
}

pub trait Store {
    /// The role the current call acts as.
    fn caller(&mut self) -> RoleId;

    /// How long the server has seen the lock `name` stand still at `rvn`, on a
    /// monotonic clock: since the write that gave it `rvn`, or, for a lock it
    /// never saw written, since it began to watch.  Never longer than the truth;
    /// `None` where the server cannot tell (it keeps no watch: not preloaded, a
    /// standby).
    fn stood_still(&mut self, name: &str, rvn: i64) -> Option<Duration>;

    /// Whether someone else waits in `queue` ahead of this caller: a caller that
    /// is not queued has everyone queued ahead of it.  Waiters are served in the
    /// order they came, so a free lock is theirs before it is this caller's.
    fn queued_ahead(&mut self, queue: Queue<'_>) -> bool;

    /// The lock `name` as last committed (as this transaction may see it).
    fn read(&mut self, name: &str, fields: Fields) -> Option<Lock>;

    /// Insert a new lock with a new RVN; `None` if the name exists after all.
    fn insert(&mut self, claim: &Claim<'_>, data: Option<&[u8]>) -> Option<i64>;

    /// Give the lock to `claim` with a new RVN if its RVN is still `expected_rvn`;
    /// the new RVN and the data now stored, or `None` if the lock changed.
    /// Without `wait_for_row` it also matches nothing, instead of waiting, when
    /// another transaction has the lock's row locked (a bulk release that gave
    /// the name's lock back but has not committed).
    fn take_over(
        &mut self,
        claim: &Claim<'_>,
        expected_rvn: i64,
        data: DataChange<'_>,
        wait_for_row: bool,
    ) -> Option<(i64, Option<Vec<u8>>)>;

    /// Renew the lease of exactly `holder` (not released) with a new RVN, and the
    /// lease if given; the new RVN, or `None` if `holder` does not hold the lock.
    fn heartbeat(
        &mut self,
        holder: &Holder<'_>,
        data: DataChange<'_>,
        lease: Option<&Lease>,
    ) -> Option<i64>;

    /// Release the lock held by exactly `holder`: delete it, or with `keep` mark
    /// it released with a new RVN (data replaced unless `None`).
    fn release(&mut self, holder: &Holder<'_>, keep: bool, data: Option<&[u8]>)
        -> Option<Released>;

    /// The first waiter queued for `name`, if a release may hand it the lock
    /// now (the server keeps waiters' claims for that); `None` where it may not.
    fn heir(&mut self, name: &str) -> Option<Heir>;

    /// Give the lock held by exactly `holder` to `heir`, with a new RVN and
    /// `data` as the heir's own acquire would store it; the new RVN, or `None`
    /// if `holder` does not hold the lock.
    fn hand_over(&mut self, holder: &Holder<'_>, heir: &Heir, data: DataChange<'_>) -> Option<i64>;

    /// Tell `heir` that this transaction handed it the lock `name` at `rvn`:
    /// once it commits, the heir finds the lock its own.
    fn handed_over(&mut self, name: &str, heir: &Heir, rvn: i64);

    /// The RVN at which a release handed the lock `name` to this caller, if
    /// one did (its transaction may not have committed yet).
    fn handed_to_me(&mut self, name: &str) -> Option<i64>;

    /// Delete the lock whoever holds it (an operator's last resort); false if
    /// there was none.
    fn force_delete(&mut self, name: &str) -> bool;

    /// Every lock `owner` holds for `role`, as `(name, rvn)`.
    fn held_by(&mut self, owner: &str, role: RoleId) -> Vec<(String, i64)>;

    /// Make the RVN sequence hand out only numbers above `rvn` and above every
    /// RVN stored: it fell behind the table (a restore, a replica promoted
    /// without it, `setval`).
    fn advance_rvns_past(&mut self, rvn: i64);

    /// Give the lock `name`, which this transaction just wrote at `rvn`, a new RVN
    /// from the sequence.
    fn renumber(&mut self, name: &str, rvn: i64) -> i64;

    /// Take this transaction's exclusive lock on the name, until it ends.  Writes to
    /// one name thus happen one at a time, each drawing its RVN after the last
    /// committed, and a read made under it sees every earlier writer committed.
    fn lock_name(&mut self, name: &str);

    /// [`Store::lock_name`] only if no other transaction is writing the name right
    /// now; false instead of waiting.  A wait with a deadline must never queue
    /// behind another transaction, which may stay open for as long as it likes.
    fn try_lock_name(&mut self, name: &str) -> bool;

    /// Give back one `lock_name` of this transaction, after a call that wrote nothing.
    fn unlock_name(&mut self, name: &str);

    /// The order in which to take name locks when taking several: one order for
    /// every caller, so two of them cannot deadlock.
    fn name_lock_key(&mut self, name: &str) -> u64;
}

/// A queue of waiters in the server: those waiting for one lock, or for any
/// slot of one semaphore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue<'a> {
    Lock(&'a str),
    Slots(&'a str),
}

/// What a fence needs besides [`Store`]: a name lock that writers wait for but
/// other fences share, and a share lock on the holder's row.
///
/// A fence holds both until its transaction ends, so that no heartbeat,
/// takeover or release of the lock by another transaction commits before it.
/// The name lock makes writers that take the name first (every write but the
/// bulk ones) wait, in the name lock's queue; the row lock makes the bulk writes
/// (release-all, heartbeat-many), which give each name's lock back before they
/// commit, wait too, and makes the fence wait for one of them in progress.
pub trait Fencing: Store {
    /// Take this transaction's shared lock on the name, until it ends: it waits
    /// for, and then blocks, every other transaction's [`Store::lock_name`] (and
    /// `try_lock_name` fails), but not other shared locks of the name.  It waits
    /// like `lock_name`, behind writers already queued.
    fn lock_name_shared(&mut self, name: &str);

    /// Give back one [`Fencing::lock_name_shared`] of this transaction.
    fn unlock_name_shared(&mut self, name: &str);

    /// Lock the row of exactly `holder` (not released) in share mode until this
    /// transaction ends, and return its RVN; `None` if `holder` does not hold the
    /// lock.  Other transactions' updates and deletes of the row wait for this
    /// one; if one of them is writing the row right now (a bulk write that gave
    /// the name back), this waits for it to end and then looks at the row as it
    /// left it.  Writes no new RVN.  Under a transaction snapshot (REPEATABLE
    /// READ, SERIALIZABLE) a row changed since the snapshot is a serialization
    /// failure, as for any row lock.
    fn fence(&mut self, holder: &Holder<'_>) -> Option<i64>;
}
