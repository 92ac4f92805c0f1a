//! The protocol's decisions: pure functions of the lock as read and the request.

use std::time::Duration;

use crate::error::{NotHeldReason, ProtocolError};
use crate::lock::{DataChange, Holder, Lock, RoleId};

/// What an acquire should do, given the lock as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireDecision {
    /// No such lock: insert it.
    Create,
    /// Released, or its holder's RVN stood still for a lease: rewrite it, provided
    /// the RVN is still `expected_rvn`.  The data stored with it passes to the new
    /// holder only within the role that wrote it.
    TakeOver { expected_rvn: i64, same_role: bool },
    /// Held, and nobody who may say so saw its RVN stand still for its lease:
    /// report the holder, write nothing.
    Refuse,
}

/// The trust model in one decision.  A held lock is taken over once its RVN
/// stood still for the holder's lease, and two observers may say it did:
///
/// - the caller, within its own role: owners of a role cooperate, so one that
///   presents the RVN it watched stand still (`observed_rvn`) is taken at its
///   word, whatever the server saw;
/// - the server, for any caller: `stood_still` is how long the server itself has
///   seen the lock at this RVN, on a monotonic clock (`None` where it cannot
///   tell), asked only when the caller's word does not decide.
///
/// Roles do not trust each other, so another role's lock is taken over only on
/// the server's observation: no caller's claim and no wall clock decides it.
pub fn decide_acquire(
    current: Option<&Lock>,
    observed_rvn: Option<i64>,
    caller: RoleId,
    stood_still: impl FnOnce(i64) -> Option<Duration>,
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
    if observed_rvn == Some(lock.rvn) && lock.holder_role == caller {
        return take_over;
    }
    if stood_still(lock.rvn).is_some_and(|still| still >= lock.lease.as_duration()) {
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
    const LEASE: Duration = Duration::from_secs(20);

    /// The server has not watched the lock (not preloaded, or just started).
    fn unseen(_rvn: i64) -> Option<Duration> {
        None
    }

    fn decide(current: Option<&Lock>, observed_rvn: Option<i64>) -> AcquireDecision {
        decide_acquire(current, observed_rvn, CALLER, unseen)
    }

    fn held(owner: &str, rvn: i64, role: u32) -> Lock {
        Lock {
            owner: owner.into(),
            rvn,
            lease: Lease::from_duration(LEASE),
            data: None,
            released: false,
            holder_role: RoleId(role),
        }
    }

    fn take_over(expected_rvn: i64, same_role: bool) -> AcquireDecision {
        AcquireDecision::TakeOver {
            expected_rvn,
            same_role,
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
        assert_eq!(decide(Some(&lock), Some(7)), take_over(7, true));
    }

    #[test]
    fn a_released_lock_is_taken_whatever_rvn_was_seen() {
        let lock = Lock {
            released: true,
            ..held("a", 7, 10)
        };
        for observed in [None, Some(3), Some(7)] {
            assert_eq!(decide(Some(&lock), observed), take_over(7, true));
        }
    }

    #[test]
    fn the_servers_observation_takes_over_for_any_role_without_an_rvn() {
        let server_saw = |still: Duration| move |_rvn: i64| Some(still);
        for (role, same) in [(10, true), (99, false)] {
            let lock = held("a", 7, role);
            let at = |still| decide_acquire(Some(&lock), None, CALLER, server_saw(still));
            assert_eq!(
                at(LEASE - Duration::from_micros(1)),
                AcquireDecision::Refuse
            );
            assert_eq!(at(LEASE), take_over(7, same));
            assert_eq!(at(LEASE * 3), take_over(7, same));
        }
    }

    #[test]
    fn another_roles_lock_is_never_taken_on_the_callers_word() {
        let lock = held("a", 7, 99);
        assert_eq!(decide(Some(&lock), Some(7)), AcquireDecision::Refuse);
        let short = |_rvn: i64| Some(LEASE / 2);
        assert_eq!(
            decide_acquire(Some(&lock), Some(7), CALLER, short),
            AcquireDecision::Refuse,
            "a watch of its own does not make up for what the server saw"
        );
    }

    #[test]
    fn the_server_is_asked_about_the_rvn_read_and_only_when_the_caller_does_not_decide() {
        let asked = |current: &Lock, observed| {
            let mut asked = None;
            decide_acquire(Some(current), observed, CALLER, |rvn| {
                asked = Some(rvn);
                None
            });
            asked
        };
        assert_eq!(asked(&held("a", 7, 10), Some(7)), None, "the caller's word");
        let released = Lock {
            released: true,
            ..held("a", 7, 10)
        };
        assert_eq!(asked(&released, None), None, "free");
        assert_eq!(asked(&held("a", 7, 10), None), Some(7));
        assert_eq!(asked(&held("a", 7, 99), Some(7)), Some(7));
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
