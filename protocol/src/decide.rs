//! The protocol's decisions: pure functions of the lock as read and the request.

use crate::error::{NotHeldReason, ProtocolError};
use crate::lock::{DataChange, Holder, Lock, RoleId, Timestamp};

/// What an acquire should do, given the lock as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireDecision {
    /// No such lock: insert it.
    Create,
    /// Released, or its holder's RVN stood still for a lease: rewrite it, provided
    /// the RVN is still `expected_rvn`.  The data stored with it passes to the new
    /// holder only within the role that wrote it.
    TakeOver { expected_rvn: i64, same_role: bool },
    /// Held by someone (the caller included) whose RVN the caller has not seen
    /// stand still, or by another role whose lease has not run out by the
    /// server's clock: report the holder, write nothing.
    Refuse,
}

/// The trust model in one decision.  Owners within a role cooperate: a caller
/// that saw the holder's RVN stand still for the holder's lease (`observed_rvn`)
/// takes the lock over on its word.  Roles do not trust each other: taking over
/// another role's lock also needs its lease to have run out by the server's
/// clock (`server_now`, asked only then) since its holder's last write.
pub fn decide_acquire(
    current: Option<&Lock>,
    observed_rvn: Option<i64>,
    caller: RoleId,
    server_now: impl FnOnce() -> Timestamp,
) -> AcquireDecision {
    let Some(lock) = current else {
        return AcquireDecision::Create;
    };
    let take_over = AcquireDecision::TakeOver {
        expected_rvn: lock.rvn,
        same_role: lock.holder_role == caller,
    };
    if lock.released {
        return take_over;
    }
    if observed_rvn != Some(lock.rvn) {
        return AcquireDecision::Refuse;
    }
    if lock.holder_role == caller || server_now() >= lock.written_at.plus(&lock.lease) {
        return take_over;
    }
    AcquireDecision::Refuse
}

/// Which data a write stores: `data` if given or if `replace_data` asks to store
/// even NULL; otherwise what the lock already has (a kept lock's checkpoint) when
/// the caller may inherit it, else nothing.
pub fn data_change(data: Option<&[u8]>, replace_data: bool, inherit: bool) -> DataChange<'_> {
    if replace_data || data.is_some() || !inherit {
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
    use crate::lock::Lease;

    const CALLER: RoleId = RoleId(10);
    const NOW: Timestamp = Timestamp(1_000_000_000);

    fn decide(current: Option<&Lock>, observed_rvn: Option<i64>) -> AcquireDecision {
        decide_acquire(current, observed_rvn, CALLER, || NOW)
    }

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
            written_at: NOW,
        }
    }

    #[test]
    fn a_missing_lock_is_created() {
        assert_eq!(decide(None, None), AcquireDecision::Create);
        assert_eq!(decide(None, Some(7)), AcquireDecision::Create);
    }

    #[test]
    fn a_held_lock_is_refused_until_its_rvn_is_seen_standing_still() {
        let lock = held("a", 7, 10);
        assert_eq!(decide(Some(&lock), None), AcquireDecision::Refuse);
        assert_eq!(decide(Some(&lock), Some(6)), AcquireDecision::Refuse);
        assert_eq!(
            decide(Some(&lock), Some(7)),
            AcquireDecision::TakeOver {
                expected_rvn: 7,
                same_role: true
            }
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
                decide(Some(&lock), observed),
                AcquireDecision::TakeOver {
                    expected_rvn: 7,
                    same_role: true
                }
            );
        }
    }

    #[test]
    fn another_roles_lock_needs_its_lease_run_out_by_the_server_clock_too() {
        let lock = held("a", 7, 99); // lease 20 s, written at NOW
        let at = |micros: i64| move || Timestamp(NOW.0 + micros);
        let decide_at =
            |observed, micros| decide_acquire(Some(&lock), observed, CALLER, at(micros));
        assert_eq!(decide_at(Some(7), 0), AcquireDecision::Refuse);
        assert_eq!(decide_at(Some(7), 19_999_999), AcquireDecision::Refuse);
        assert_eq!(
            decide_at(Some(7), 20_000_000),
            AcquireDecision::TakeOver {
                expected_rvn: 7,
                same_role: false
            }
        );
        // The server's clock alone is not enough: the RVN must be the one seen.
        assert_eq!(decide_at(None, 99_000_000), AcquireDecision::Refuse);
        assert_eq!(decide_at(Some(6), 99_000_000), AcquireDecision::Refuse);
    }

    #[test]
    fn the_server_clock_is_asked_only_across_roles() {
        let mine = held("a", 7, 10);
        let asked = |current: &Lock, observed| {
            let mut asked = false;
            decide_acquire(Some(current), observed, CALLER, || {
                asked = true;
                NOW
            });
            asked
        };
        assert!(!asked(&mine, Some(7)));
        assert!(!asked(&held("a", 7, 99), Some(6)));
        assert!(asked(&held("a", 7, 99), Some(7)));
    }

    #[test]
    fn data_is_kept_unless_given_or_replaced_or_another_roles() {
        assert_eq!(data_change(None, false, true), DataChange::Keep);
        assert_eq!(
            data_change(Some(b"x"), false, true),
            DataChange::Replace(Some(b"x"))
        );
        assert_eq!(data_change(None, true, true), DataChange::Replace(None));
        assert_eq!(
            data_change(Some(b"x"), true, true),
            DataChange::Replace(Some(b"x"))
        );
        assert_eq!(data_change(None, false, false), DataChange::Replace(None));
    }

    #[test]
    fn data_shows_only_to_the_holders_role() {
        let lock = Lock {
            data: Some(b"secret".to_vec()),
            ..held("a", 7, 10)
        };
        assert_eq!(lock.data_for(CALLER), Some(&b"secret"[..]));
        assert_eq!(lock.data_for(RoleId(99)), None);
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
