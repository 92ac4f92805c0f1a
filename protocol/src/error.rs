//! The errors a protocol step ends with.  The extension gives each its SQLSTATE,
//! DETAIL and HINT at the SQL boundary; the messages are the ones users see.

use crate::lock::RoleId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A heartbeat (or a release that must explain itself) from a caller that no
    /// longer holds the lock.
    #[error("pglock: lock \"{name}\" is not held by \"{owner}\"")]
    NotHeld {
        name: String,
        owner: String,
        reason: NotHeldReason,
    },
    /// Owner and RVN match, but another role acquired the lock.
    #[error("pglock: lock \"{name}\" belongs to another role")]
    HeldByOtherRole { name: String, holder_role: RoleId },
    /// The lock kept changing under a transaction whose snapshot cannot see the
    /// change (REPEATABLE READ or SERIALIZABLE): retry the transaction.
    #[error("pglock: could not serialize access to lock \"{name}\" due to concurrent update")]
    SerializationFailure { name: String },
    /// `data` given to a release that deletes the lock, so it would be lost.
    #[error("pglock: data given to a release with keep = false would be lost")]
    DataWithoutKeep,
}

/// Why a caller does not hold a lock, as far as the lock shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHeldReason {
    /// No such lock: released without keep, or never taken.
    Missing,
    Released,
    OtherOwner {
        owner: String,
    },
    /// The lock moved on to this RVN: taken over, or the caller's RVN is stale.
    NewerRvn {
        rvn: i64,
    },
}
