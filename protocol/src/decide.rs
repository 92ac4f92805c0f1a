//! The protocol's decisions: pure functions of the lock as read and the request.

use crate::error::{NotHeldReason, ProtocolError};
use crate::lock::{DataChange, Holder, Lock};

/// What an acquire should do, given the lock as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireDecision {
    /// No such lock: insert it.
    Create,
    /// Released, or its holder's RVN stood still for a lease: rewrite it, provided
    /// the RVN is still `expected_rvn`.
    TakeOver { expected_rvn: i64 },
    /// Held by someone (the caller included) whose RVN the caller has not seen
    /// stand still: report the holder, write nothing.
    Refuse,
}

pub fn decide_acquire(current: Option<&Lock>, observed_rvn: Option<i64>) -> AcquireDecision {
    match current {
        None => AcquireDecision::Create,
        Some(lock) if lock.released || observed_rvn == Some(lock.rvn) => {
            AcquireDecision::TakeOver {
                expected_rvn: lock.rvn,
            }
        }
        Some(_) => AcquireDecision::Refuse,
    }
}

/// Which data a write stores: `data` if given or if `replace_data` asks to store
/// even NULL; otherwise what the lock already has (a kept lock's checkpoint).
pub fn data_change(data: Option<&[u8]>, replace_data: bool) -> DataChange<'_> {
    if replace_data || data.is_some() {
        DataChange::Replace(data)
    } else {
        DataChange::Keep
    }
}

/// Why `holder` does not hold the lock as read, for a heartbeat or release that
/// matched no row.
pub fn why_not_held(current: Option<&Lock>, holder: &Holder<'_>) -> ProtocolError {
    let not_held = |reason| ProtocolError::NotHeld {
        name: holder.name.to_owned(),
        owner: holder.owner.to_owned(),
        reason,
    };
    match current {
        None => not_held(NotHeldReason::Missing),
        Some(lock) if lock.released => not_held(NotHeldReason::Released),
        Some(lock) if lock.owner != holder.owner => not_held(NotHeldReason::OtherOwner {
            owner: lock.owner.clone(),
        }),
        Some(lock) if lock.rvn != holder.rvn => not_held(NotHeldReason::NewerRvn { rvn: lock.rvn }),
        Some(lock) if lock.holder_role != holder.role => ProtocolError::HeldByOtherRole {
            name: holder.name.to_owned(),
            holder_role: lock.holder_role,
        },
        // Everything matches yet the write found no row: the transaction's snapshot
        // is older than the lock (REPEATABLE READ or SERIALIZABLE).
        Some(_) => ProtocolError::SerializationFailure {
            name: holder.name.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{Lease, RoleId};

    fn held(owner: &str, rvn: i64, role: u32) -> Lock {
        Lock {
            owner: owner.into(),
            rvn,
            lease: Lease {
                months: 0,
                days: 0,
                micros: 20_000_000,
            },
            data: None,
            released: false,
            holder_role: RoleId(role),
        }
    }

    #[test]
    fn a_missing_lock_is_created() {
        assert_eq!(decide_acquire(None, None), AcquireDecision::Create);
        assert_eq!(decide_acquire(None, Some(7)), AcquireDecision::Create);
    }

    #[test]
    fn a_held_lock_is_refused_until_its_rvn_is_seen_standing_still() {
        let lock = held("a", 7, 10);
        assert_eq!(decide_acquire(Some(&lock), None), AcquireDecision::Refuse);
        assert_eq!(
            decide_acquire(Some(&lock), Some(6)),
            AcquireDecision::Refuse
        );
        assert_eq!(
            decide_acquire(Some(&lock), Some(7)),
            AcquireDecision::TakeOver { expected_rvn: 7 }
        );
    }

    #[test]
    fn a_released_lock_is_taken_whatever_rvn_was_seen() {
        let lock = Lock {
            released: true,
            ..held("a", 7, 10)
        };
        for observed in [None, Some(3), Some(7)] {
            assert_eq!(
                decide_acquire(Some(&lock), observed),
                AcquireDecision::TakeOver { expected_rvn: 7 }
            );
        }
    }

    #[test]
    fn data_is_kept_unless_given_or_replaced() {
        assert_eq!(data_change(None, false), DataChange::Keep);
        assert_eq!(
            data_change(Some(b"x"), false),
            DataChange::Replace(Some(b"x"))
        );
        assert_eq!(data_change(None, true), DataChange::Replace(None));
        assert_eq!(
            data_change(Some(b"x"), true),
            DataChange::Replace(Some(b"x"))
        );
    }

    #[test]
    fn not_held_explains_the_first_mismatch() {
        let holder = Holder {
            name: "n",
            owner: "a",
            rvn: 7,
            role: RoleId(10),
        };
        let reason = |current: Option<&Lock>| match why_not_held(current, &holder) {
            ProtocolError::NotHeld { reason, .. } => Some(reason),
            _ => None,
        };
        assert_eq!(reason(None), Some(NotHeldReason::Missing));
        let released = Lock {
            released: true,
            ..held("a", 7, 10)
        };
        assert_eq!(reason(Some(&released)), Some(NotHeldReason::Released));
        assert_eq!(
            reason(Some(&held("b", 7, 99))),
            Some(NotHeldReason::OtherOwner { owner: "b".into() })
        );
        assert_eq!(
            reason(Some(&held("a", 9, 99))),
            Some(NotHeldReason::NewerRvn { rvn: 9 })
        );
        assert_eq!(
            why_not_held(Some(&held("a", 7, 99)), &holder),
            ProtocolError::HeldByOtherRole {
                name: "n".into(),
                holder_role: RoleId(99)
            }
        );
        assert!(matches!(
            why_not_held(Some(&held("a", 7, 10)), &holder),
            ProtocolError::SerializationFailure { .. }
        ));
    }
}
