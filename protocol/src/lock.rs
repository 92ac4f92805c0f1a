//! A lock as the store keeps it, and the small values the protocol passes around.
//! No wall-clock time is among them: no clock but a monotonic one ever decides a
//! takeover.

use std::time::Duration;

const MICROS_PER_DAY: i128 = 86_400_000_000;

/// A database role, by OID: the holder a lock records, or the caller of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleId(pub u32);

/// A lease as PostgreSQL's `interval` keeps it, so a lease comes back exactly as
/// it was given (`1 day` stays `1 day`, not `24:00:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Lease {
    pub fn from_duration(duration: Duration) -> Lease {
        Lease {
            months: 0,
            days: 0,
            micros: i64::try_from(duration.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Its length in microseconds, a month counting as 30 days (as PostgreSQL's
    /// interval comparisons do).
    pub fn as_micros(&self) -> i128 {
        (i128::from(self.months) * 30 + i128::from(self.days)) * MICROS_PER_DAY
            + i128::from(self.micros)
    }

    /// Its length as a duration; a negative lease counts as none.
    pub fn as_duration(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.as_micros().max(0)).unwrap_or(u64::MAX))
    }
}

/// One lock as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub owner: String,
    pub rvn: i64,
    pub lease: Lease,
    pub data: Option<Vec<u8>>,
    pub released: bool,
    pub holder_role: RoleId,
}

impl Lock {
    /// The holder this lock records.
    pub fn recorded(&self) -> Recorded<'_> {
        Recorded {
            owner: &self.owner,
            rvn: self.rvn,
            role: self.holder_role,
            released: self.released,
        }
    }

    /// The data as `caller` may see it: a lock's data is its holder role's
    /// private checkpoint, so another role sees none.
    pub fn data_for(&self, caller: RoleId) -> Option<&[u8]> {
        self.data.as_deref().filter(|_| self.holder_role == caller)
    }
}

/// Who claims a lock in a write: the new holder's owner label, lease and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub lease: &'a Lease,
    pub role: RoleId,
}

/// Who says they hold a lock: owner label, the latest RVN they were given, and
/// the role they act as.  A heartbeat or release matches only this exact holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub rvn: i64,
    pub role: RoleId,
}

/// The holder a stored lock records, borrowed from it as the store reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded<'a> {
    pub owner: &'a str,
    pub rvn: i64,
    pub role: RoleId,
    pub released: bool,
}

impl Holder<'_> {
    /// Whether `recorded` is this exact holder: the lock is not released and its
    /// owner, RVN and role are this holder's.  The one rule every heartbeat,
    /// release, hand-over and fence matches a lock by.
    pub fn is(&self, recorded: Recorded<'_>) -> bool {
        !recorded.released
            && recorded.owner == self.owner
            && recorded.rvn == self.rvn
            && recorded.role == self.role
    }
}

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    Deleted,
    /// Kept as released, with this new RVN.
    Kept {
        rvn: i64,
    },
}

/// How a write treats the data already stored with a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChange<'a> {
    Keep,
    Replace(Option<&'a [u8]>),
}

/// A waiter the server queued for a lock, whom a release may hand the lock
/// straight to, as PostgreSQL's lock manager grants a lock to its first waiter:
/// who it is and what its own acquire asked for.  `ticket` identifies its
/// place in the queue to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heir {
    pub owner: String,
    pub lease: Lease,
    pub role: RoleId,
    pub data: Option<Vec<u8>>,
    pub replace_data: bool,
    pub ticket: u64,
}
