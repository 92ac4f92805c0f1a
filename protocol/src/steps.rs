//! The protocol's steps, top to bottom: acquire, heartbeat, release, release all.
//!
//! An acquire reads without locking and decides ([`decide_acquire`]); only a
//! decision to write takes the name's lock, and the write repeats the decision's
//! expectation (the RVN it saw) in its own condition, so two callers racing can
//! never both win.  A refused acquire takes no lock and writes nothing.
//! Heartbeat and release take the name's lock first and write only if the caller
//! is exactly the holder; when nothing matched they read the lock to say why.

use crate::decide::{data_change, decide_acquire, why_not_held, AcquireDecision};
use crate::error::ProtocolError;
use crate::lock::{Claim, Holder, Lease};
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct AcquireRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub lease: Lease,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
    pub observed_rvn: Option<i64>,
}

/// What an acquire returns: the caller's new lock, or the holder's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireOutcome {
    pub acquired: bool,
    /// Acquired from a holder whose RVN stood still (not a free lock).
    pub taken_over: bool,
    pub rvn: i64,
    pub owner: String,
    pub lease: Lease,
    pub data: Option<Vec<u8>>,
}

/// Under READ COMMITTED the second pass reads under the name's lock and cannot
/// lose; more passes only happen when a transaction snapshot hides the writer.
pub const ACQUIRE_PASSES: usize = 3;

pub fn acquire(
    store: &mut impl Store,
    request: &AcquireRequest<'_>,
) -> Result<AcquireOutcome, ProtocolError> {
    let claim = Claim {
        name: request.name,
        owner: request.owner,
        lease: &request.lease,
        role: store.caller(),
    };
    // Held from the first write attempt on: a read made under it sees every
    // earlier writer of this name committed, so its decision is final.
    let mut name_locked = false;
    for _ in 0..ACQUIRE_PASSES {
        let current = store.read(request.name);
        let decision = decide_acquire(current.as_ref(), request.observed_rvn);
        if decision != AcquireDecision::Refuse && !name_locked {
            store.lock_name(request.name);
            name_locked = true;
        }
        let written = match (decision, current) {
            (AcquireDecision::Refuse, Some(holder)) => {
                // A refusal writes nothing: give the name back if an earlier pass
                // took it, so that a caller waiting in this transaction does not
                // keep the holder from heartbeating.
                if name_locked {
                    store.unlock_name(request.name);
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
            (AcquireDecision::Refuse, None) => unreachable!("a refusal names a holder"),
            (AcquireDecision::Create, _) => store
                .insert(&claim, request.data)
                .map(|rvn| (rvn, request.data.map(<[u8]>::to_vec), false)),
            (AcquireDecision::TakeOver { expected_rvn }, current) => {
                let from_holder = current.is_some_and(|lock| !lock.released);
                let data = data_change(request.data, request.replace_data);
                store
                    .take_over(&claim, expected_rvn, data)
                    .map(|(rvn, data)| (rvn, data, from_holder))
            }
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
    Err(ProtocolError::SerializationFailure {
        name: request.name.to_owned(),
    })
}

#[derive(Debug, Clone, Copy)]
pub struct HeartbeatRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub rvn: i64,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
    pub lease: Option<Lease>,
}

/// The holder's new RVN, or an error saying why the caller no longer holds the lock.
pub fn heartbeat(
    store: &mut impl Store,
    request: &HeartbeatRequest<'_>,
) -> Result<i64, ProtocolError> {
    let holder = Holder {
        name: request.name,
        owner: request.owner,
        rvn: request.rvn,
        role: store.caller(),
    };
    store.lock_name(request.name);
    let data = data_change(request.data, request.replace_data);
    store
        .heartbeat(&holder, data, request.lease.as_ref())
        .ok_or_else(|| why_not_held(store.read(request.name).as_ref(), &holder))
}

#[derive(Debug, Clone, Copy)]
pub struct ReleaseRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub rvn: i64,
    pub keep: bool,
    pub data: Option<&'a [u8]>,
}

/// True if released; false if the caller does not hold the lock; an error if the
/// caller names the holder exactly but is another role.
pub fn release(
    store: &mut impl Store,
    request: &ReleaseRequest<'_>,
) -> Result<bool, ProtocolError> {
    if !request.keep && request.data.is_some() {
        return Err(ProtocolError::DataWithoutKeep);
    }
    let holder = Holder {
        name: request.name,
        owner: request.owner,
        rvn: request.rvn,
        role: store.caller(),
    };
    store.lock_name(request.name);
    if store.release(&holder, request.keep, request.data) {
        return Ok(true);
    }
    match why_not_held(store.read(request.name).as_ref(), &holder) {
        ProtocolError::NotHeld { .. } => Ok(false),
        other => Err(other),
    }
}

/// Release every lock `owner` holds for the calling role (a client shutting
/// down); the number released.  Each is released like [`release`], under its
/// name's lock, so one that changed meanwhile (taken over) is left alone.
pub fn release_all(store: &mut impl Store, owner: &str, keep: bool) -> i64 {
    let role = store.caller();
    let mut held = store.held_by(owner, role);
    // One order for everyone, so two callers releasing overlapping sets of names
    // cannot deadlock on the per-name locks.
    held.sort();
    let mut released = 0;
    for (name, rvn) in &held {
        let holder = Holder {
            name,
            owner,
            rvn: *rvn,
            role,
        };
        store.lock_name(name);
        if store.release(&holder, keep, None) {
            released += 1;
        }
    }
    released
}
