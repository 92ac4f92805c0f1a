//! The lease protocol, top to bottom.
//!
//! A lock is a row with an owner, a lease and a record version number (RVN) that
//! changes on every write.  Nothing here looks at a clock: the *caller* times leases.
//!
//! - acquire: a missing or released lock is taken at once.  A held lock is refused
//!   and its holder's row returned; the caller waits the holder's lease and asks
//!   again with `observed_rvn`: if the RVN stood still, the holder missed its
//!   heartbeats and the lock is taken over.
//! - heartbeat: the holder (same owner, RVN and role) gets a new RVN, which restarts
//!   the wait of anyone watching.  Anyone else gets an error.
//! - release: the holder deletes the lock, or keeps it (and its data) as released.
//!
//! Each step reads without locking, decides in plain Rust ([`decide_acquire`],
//! [`why_not_held`]), then writes under the per-name lock with the decision's
//! expectations repeated in the statement's WHERE clause, so two callers racing can
//! never both win.  A refused acquire takes no lock, no transaction id and writes
//! no WAL.

use pgrx::pg_sys::Oid;
use pgrx::prelude::Interval;

use crate::error::{NotHeldReason, PglockError};
use crate::store::{self, DataChange, LockRow};

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

pub fn decide_acquire(current: Option<&LockRow>, observed_rvn: Option<i64>) -> AcquireDecision {
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

/// Why `owner` at `rvn` acting as `caller` does not hold the lock as read, for a
/// heartbeat or release that matched no row.
pub fn why_not_held(
    name: &str,
    current: Option<&LockRow>,
    owner: &str,
    rvn: i64,
    caller: Oid,
) -> PglockError {
    let not_held = |reason| PglockError::NotHeld {
        name: name.to_owned(),
        owner: owner.to_owned(),
        reason,
    };
    match current {
        None => not_held(NotHeldReason::Missing),
        Some(lock) if lock.released => not_held(NotHeldReason::Released),
        Some(lock) if lock.owner != owner => not_held(NotHeldReason::OtherOwner {
            owner: lock.owner.clone(),
        }),
        Some(lock) if lock.rvn != rvn => not_held(NotHeldReason::NewerRvn { rvn: lock.rvn }),
        Some(lock) if lock.holder_role != caller => PglockError::HeldByOtherRole {
            name: name.to_owned(),
            holder_role: lock.holder_role,
        },
        // Everything matches yet the write found no row: the transaction's snapshot
        // is older than the lock (REPEATABLE READ or SERIALIZABLE).
        Some(_) => PglockError::SerializationFailure {
            name: name.to_owned(),
        },
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AcquireRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub lease: Interval,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
    pub observed_rvn: Option<i64>,
}

/// The row `pglock_acquire` returns: the caller's new lock, or the holder's.
#[derive(Debug, Clone)]
pub struct AcquireOutcome {
    pub acquired: bool,
    /// Acquired from a holder whose RVN stood still (not a free lock).
    pub taken_over: bool,
    pub rvn: i64,
    pub owner: String,
    pub lease: Interval,
    pub data: Option<Vec<u8>>,
}

/// Under READ COMMITTED the second pass reads under the per-name lock and cannot
/// lose; more passes only happen when a transaction snapshot hides the writer.
const ACQUIRE_PASSES: usize = 3;

pub fn acquire(request: &AcquireRequest<'_>) -> Result<AcquireOutcome, PglockError> {
    let caller = store::caller_role();
    // Held from the first write attempt on: a read made under it sees every
    // earlier writer of this name committed, so its decision is final.
    let mut name_locked = false;
    for _ in 0..ACQUIRE_PASSES {
        let current = store::read(request.name);
        let decision = decide_acquire(current.as_ref(), request.observed_rvn);
        if decision != AcquireDecision::Refuse && !name_locked {
            store::lock_name(request.name);
            name_locked = true;
        }
        let written = match (decision, current) {
            (AcquireDecision::Refuse, Some(holder)) => {
                // A refusal writes nothing: give the name back if an earlier pass
                // took it, so that a caller waiting in this transaction does not
                // keep the holder from heartbeating.
                if name_locked {
                    store::unlock_name(request.name);
                }
                return Ok(AcquireOutcome {
                    acquired: false,
                    taken_over: false,
                    rvn: holder.rvn,
                    owner: holder.owner,
                    lease: holder.lease,
                    data: holder.data,
                });
            }
            (AcquireDecision::Create, _) => {
                let data = request.data;
                store::insert(request.name, request.owner, request.lease, data, caller)
                    .map(|rvn| (rvn, data.map(<[u8]>::to_vec), false))
            }
            (AcquireDecision::TakeOver { expected_rvn }, current) => {
                let from_holder = current.is_some_and(|lock| !lock.released);
                store::take_over(
                    request.name,
                    expected_rvn,
                    request.owner,
                    request.lease,
                    data_change(request.data, request.replace_data),
                    caller,
                )
                .map(|(rvn, data)| (rvn, data, from_holder))
            }
            (AcquireDecision::Refuse, None) => unreachable!("a refusal names a holder"),
        };
        if let Some((rvn, data, taken_over)) = written {
            return Ok(AcquireOutcome {
                acquired: true,
                taken_over,
                rvn,
                owner: request.owner.to_owned(),
                lease: request.lease,
                data,
            });
        }
        // Another session wrote the lock between our read and our write; we now
        // hold the name, so the next read sees where it ended up.
    }
    Err(PglockError::SerializationFailure {
        name: request.name.to_owned(),
    })
}

pub struct HeartbeatRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub rvn: i64,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
    pub lease: Option<Interval>,
}

/// The holder's new RVN, or an error saying why the caller no longer holds the lock.
pub fn heartbeat(request: &HeartbeatRequest<'_>) -> Result<i64, PglockError> {
    let caller = store::caller_role();
    store::lock_name(request.name);
    let data = data_change(request.data, request.replace_data);
    store::heartbeat(
        request.name,
        request.owner,
        request.rvn,
        caller,
        data,
        request.lease,
    )
    .ok_or_else(|| {
        let current = store::read(request.name);
        why_not_held(
            request.name,
            current.as_ref(),
            request.owner,
            request.rvn,
            caller,
        )
    })
}

pub struct ReleaseRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub rvn: i64,
    pub keep: bool,
    pub data: Option<&'a [u8]>,
}

/// True if released; false if the caller does not hold the lock; an error if the
/// caller names the holder exactly but is another role.
pub fn release(request: &ReleaseRequest<'_>) -> Result<bool, PglockError> {
    if !request.keep && request.data.is_some() {
        return Err(PglockError::DataWithoutKeep);
    }
    let caller = store::caller_role();
    store::lock_name(request.name);
    let (name, owner, rvn) = (request.name, request.owner, request.rvn);
    if store::release(name, owner, rvn, caller, request.keep, request.data) {
        return Ok(true);
    }
    match why_not_held(name, store::read(name).as_ref(), owner, rvn, caller) {
        PglockError::NotHeld { .. } => Ok(false),
        other => Err(other),
    }
}

/// Release every lock `owner` holds for the calling role (a client shutting
/// down); the number released.  Each is released like [`release`], under its
/// name's lock, so one that changed meanwhile (taken over) is left alone.
pub fn release_all(owner: &str, keep: bool) -> i64 {
    let caller = store::caller_role();
    let mut released = 0;
    let mut held = store::held_by(owner, caller);
    // One order for everyone, so two callers releasing overlapping sets of names
    // cannot deadlock on the per-name locks.
    held.sort();
    for (name, rvn) in held {
        store::lock_name(&name);
        if store::release(&name, owner, rvn, caller, keep, None) {
            released += 1;
        }
    }
    released
}

pub fn get(name: &str) -> Option<LockRow> {
    store::read(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(owner: &str, rvn: i64, role: u32) -> LockRow {
        LockRow {
            owner: owner.into(),
            rvn,
            lease: Interval::new(0, 0, 20_000_000).expect("valid interval"),
            data: None,
            released: false,
            holder_role: Oid::from(role),
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
        let lock = LockRow {
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
        let caller = Oid::from(10);
        let reason = |current: Option<&LockRow>| match why_not_held("n", current, "a", 7, caller) {
            PglockError::NotHeld { reason, .. } => Some(reason),
            _ => None,
        };
        assert_eq!(reason(None), Some(NotHeldReason::Missing));
        let released = LockRow {
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
            why_not_held("n", Some(&held("a", 7, 99)), "a", 7, caller),
            PglockError::HeldByOtherRole {
                name: "n".into(),
                holder_role: Oid::from(99)
            }
        );
        assert!(matches!(
            why_not_held("n", Some(&held("a", 7, 10)), "a", 7, caller),
            PglockError::SerializationFailure { .. }
        ));
    }
}
