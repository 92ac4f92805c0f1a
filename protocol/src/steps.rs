//! The protocol's steps, top to bottom: acquire, heartbeat, release, release all,
//! an operator's forced release, a fence, and heartbeats of many locks at once.
//!
//! An acquire reads without locking and decides ([`decide_acquire`]); only a
//! decision to write takes the name's lock, and the write repeats the decision's
//! expectation (the RVN it saw) in its own condition, so two callers racing can
//! never both win.  Heartbeat and release take the name's lock first and write
//! only if the caller is exactly the holder; when nothing matched they read the
//! lock to say why.  A caller of another role than the lock's does not queue for
//! a name another transaction has: it is answered at once from the lock as last
//! committed.  A call that changes nothing gives the name's lock back before it
//! returns: it holds nothing, in whatever transaction it ran.  The one exception
//! is a fence that succeeds: holding the lock against other writers until its
//! transaction ends is what it is for.

use crate::decide::{data_change, decide_acquire, why_not_held, AcquireDecision};
use crate::error::ProtocolError;
use crate::lock::{Claim, DataChange, Heir, Holder, Lease, Lock, Released, RoleId};
use crate::slot_names::semaphore_of;
use crate::store::{Fencing, Fields, Queue, Store};

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
    /// The lock's data; a refusal shows it only to the holder's own role.
    pub data: Option<Vec<u8>>,
}

impl AcquireOutcome {
    /// A refusal showing `holder` as `caller` may see it.
    pub fn refused(holder: Lock, caller: RoleId) -> AcquireOutcome {
        let data = holder.data_for(caller).map(<[u8]>::to_vec);
        AcquireOutcome {
            acquired: false,
            taken_over: false,
            rvn: holder.rvn,
            owner: holder.owner,
            lease: holder.lease,
            data,
        }
    }
}

/// How an acquire attempt behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Wait for the name's lock like any write (a plain acquire), or give up at
    /// once when another transaction is writing the name (a wait with a deadline).
    pub wait_for_name: bool,
    /// Whether to read the holder's data, to show it in a refusal.
    pub holder_data: Fields,
}

impl Attempt {
    pub const PLAIN: Attempt = Attempt {
        wait_for_name: true,
        holder_data: Fields::WithData,
    };
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// Taken, or refused (the outcome shows the holder).
    Done(AcquireOutcome),
    /// Another transaction is writing the lock right now; `current` is the lock
    /// as last committed, if any.
    NameBusy { current: Option<Lock> },
    /// The lock could be taken, but others wait for it in the server's queue
    /// ahead of this caller, and it is theirs first; `current` is the lock as
    /// read (released, a dead holder's, or none).
    Queued { current: Option<Lock> },
}

impl Attempted {
    /// The attempt's answer as a caller sees it: the lock taken, or the holder
    /// refused with, if there is one to show.
    pub fn outcome(self, caller: RoleId) -> Option<AcquireOutcome> {
        match self {
            Attempted::Done(outcome) => Some(outcome),
            Attempted::NameBusy { current } | Attempted::Queued { current } => {
                current.map(|lock| AcquireOutcome::refused(lock, caller))
            }
        }
    }
}

/// Under READ COMMITTED the second pass reads under the name's lock and cannot
/// lose; more passes only happen when a transaction snapshot hides the writer.
pub const ACQUIRE_PASSES: usize = 3;

/// The caller's new lock, or the holder's, as a plain `pglock_acquire` answers;
/// `None` when it is refused with no holder to show: the lock is free, but
/// others wait for it in the server's queue (a plain acquire does not jump it,
/// as `pg_try_advisory_lock` does not jump `pg_advisory_lock`'s waiters).
pub fn acquire(
    store: &mut impl Store,
    request: &AcquireRequest<'_>,
) -> Result<Option<AcquireOutcome>, ProtocolError> {
    let caller = store.caller();
    Ok(attempt(store, request, Attempt::PLAIN)?.outcome(caller))
}

pub fn attempt(
    store: &mut impl Store,
    request: &AcquireRequest<'_>,
    how: Attempt,
) -> Result<Attempted, ProtocolError> {
    let caller = store.caller();
    let claim = Claim {
        name: request.name,
        owner: request.owner,
        lease: &request.lease,
        role: caller,
    };
    // Held from the first write attempt on: a read made under it sees every
    // earlier writer of this name committed, so its decision is final.
    let mut name_locked = false;
    // The RVN of a takeover that matched nothing in the last pass.
    let mut missed_rvn = None;
    for _ in 0..ACQUIRE_PASSES {
        let current = store.read(request.name, how.holder_data);
        if let Some(granted) = handed(store, request, current.as_ref()) {
            if name_locked {
                store.unlock_name(request.name);
            }
            return Ok(Attempted::Done(granted));
        }
        if missed_rvn.is_some() && missed_rvn == current.as_ref().map(|lock| lock.rvn) {
            // The takeover matched nothing, yet the lock is as we read it: another
            // transaction has its row locked, and a caller that must not wait
            // treats that as a name being written.
            store.unlock_name(request.name);
            return Ok(Attempted::NameBusy { current });
        }
        let decision = decide_acquire(current.as_ref(), request.observed_rvn, caller, |rvn| {
            store.stood_still(request.name, rvn)
        });
        if decision != AcquireDecision::Refuse && !name_locked {
            // Queued waiters are served first: a free or dead holder's lock is
            // theirs.  Asked once, before the first write; a waiter that queues
            // later comes after this caller.
            if queued_ahead(store, request.name) {
                return Ok(Attempted::Queued { current });
            }
            if how.wait_for_name {
                store.lock_name(request.name);
            } else if !store.try_lock_name(request.name) {
                return Ok(Attempted::NameBusy { current });
            }
            name_locked = true;
        }
        match (decision, current) {
            (AcquireDecision::Refuse, Some(holder)) => {
                // A refusal writes nothing: give the name back if an earlier pass
                // took it.
                if name_locked {
                    store.unlock_name(request.name);
                }
                return Ok(Attempted::Done(AcquireOutcome::refused(holder, caller)));
            }
            (AcquireDecision::Refuse, None) => unreachable!("a refusal names a holder"),
            (AcquireDecision::Create, _) => {
                if let Some(rvn) = store.insert(&claim, request.data) {
                    let data = request.data.map(<[u8]>::to_vec);
                    return Ok(Attempted::Done(taken(request, rvn, data, false)));
                }
            }
            (
                AcquireDecision::TakeOver {
                    expected_rvn,
                    same_role,
                },
                current,
            ) => {
                let from_holder = current.is_some_and(|lock| !lock.released);
                let data = data_change(request.data, request.replace_data, same_role);
                let wait_for_row = how.wait_for_name;
                if let Some((rvn, data)) = store.take_over(&claim, expected_rvn, data, wait_for_row)
                {
                    let rvn = rvn_above(store, request.name, rvn, expected_rvn);
                    return Ok(Attempted::Done(taken(request, rvn, data, from_holder)));
                }
                if !wait_for_row {
                    missed_rvn = Some(expected_rvn);
                }
            }
        }
        // Another session wrote the lock between our read and our write; we now
        // hold the name, so the next read sees where it ended up.
    }
    if name_locked {
        store.unlock_name(request.name);
    }
    Err(ProtocolError::SerializationFailure {
        name: request.name.to_owned(),
    })
}

/// The lock, if a release handed it to this caller and that is now visible:
/// held at the RVN handed over, by this owner and role.
fn handed(
    store: &mut impl Store,
    request: &AcquireRequest<'_>,
    current: Option<&Lock>,
) -> Option<AcquireOutcome> {
    let me = Holder {
        name: request.name,
        owner: request.owner,
        rvn: store.handed_to_me(request.name)?,
        role: store.caller(),
    };
    let lock = current.filter(|lock| me.is(lock.recorded()))?;
    // The data as stored (polls read none).
    let data = store
        .read(request.name, Fields::WithData)
        .filter(|read| read.rvn == lock.rvn)
        .and_then(|read| read.data);
    Some(AcquireOutcome {
        acquired: true,
        taken_over: false,
        rvn: lock.rvn,
        owner: lock.owner.clone(),
        lease: lock.lease,
        data,
    })
}

/// Whether others wait ahead of this caller for the lock `name`: in its queue,
/// or, for a semaphore's slot, in the semaphore's (a slot is theirs as much as
/// any waiter's for that one name).
fn queued_ahead(store: &mut impl Store, name: &str) -> bool {
    store.queued_ahead(Queue::Lock(name))
        || semaphore_of(name)
            .is_some_and(|(semaphore, _)| store.queued_ahead(Queue::Slots(semaphore)))
}

fn taken(
    request: &AcquireRequest<'_>,
    rvn: i64,
    data: Option<Vec<u8>>,
    taken_over: bool,
) -> AcquireOutcome {
    AcquireOutcome {
        acquired: true,
        taken_over,
        rvn,
        owner: request.owner.to_owned(),
        lease: request.lease,
        data,
    }
}

/// A write's new RVN, made larger than the one it replaced if the sequence had
/// fallen behind the table: a fencing token must never go backwards.  The lower
/// number never leaves this transaction.
fn rvn_above(store: &mut impl Store, name: &str, written: i64, previous: i64) -> i64 {
    if written > previous {
        return written;
    }
    store.advance_rvns_past(previous);
    store.renumber(name, written)
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
    let holder = caller_as_holder(store, request.name, request.owner, request.rvn);
    lock_name_as(store, &holder)?;
    let data = data_change(request.data, request.replace_data, true);
    match store.heartbeat(&holder, data, request.lease.as_ref()) {
        Some(rvn) => Ok(rvn_above(store, request.name, rvn, request.rvn)),
        None => Err(not_held(store, &holder)),
    }
}

/// The caller as the holder it claims to be, for heartbeat, release and fence to
/// match exactly: the role is always the caller's own, never one it names.
fn caller_as_holder<'a>(
    store: &mut impl Store,
    name: &'a str,
    owner: &'a str,
    rvn: i64,
) -> Holder<'a> {
    Holder {
        name,
        owner,
        rvn,
        role: store.caller(),
    }
}

/// Take the name's lock for a write only `holder` may make.  When another
/// transaction has the name (a fence, a write in progress) and the lock as last
/// committed belongs to another role, the caller is answered at once from it, as
/// if it had run just before that transaction, instead of queuing: in the
/// queue, its futile request would hold up the holder's own next fence until
/// the one in progress ends.
fn lock_name_as(store: &mut impl Store, holder: &Holder<'_>) -> Result<(), ProtocolError> {
    if store.try_lock_name(holder.name) {
        return Ok(());
    }
    let current = store.read(holder.name, Fields::WithoutData);
    if current
        .as_ref()
        .is_some_and(|lock| lock.holder_role != holder.role)
    {
        return Err(why_not_held(current.as_ref(), holder));
    }
    store.lock_name(holder.name);
    Ok(())
}

/// Why `holder` matched nothing, with the name's lock given back.
fn not_held(store: &mut impl Store, holder: &Holder<'_>) -> ProtocolError {
    let current = store.read(holder.name, Fields::WithoutData);
    store.unlock_name(holder.name);
    why_not_held(current.as_ref(), holder)
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
    let holder = caller_as_holder(store, request.name, request.owner, request.rvn);
    if let Err(why) = lock_name_as(store, &holder) {
        return not_released(why);
    }
    // A waiter queued for it gets the lock in this same write: one commit
    // releases and hands over.
    if let Some(heir) = store.heir(request.name) {
        let data = heirs_data(request, &heir, holder.role);
        return match store.hand_over(&holder, &heir, data) {
            Some(rvn) => {
                let rvn = rvn_above(store, request.name, rvn, request.rvn);
                store.handed_over(request.name, &heir, rvn);
                Ok(true)
            }
            None => not_released(not_held(store, &holder)),
        };
    }
    match store.release(&holder, request.keep, request.data) {
        Some(released) => {
            if let Released::Kept { rvn } = released {
                rvn_above(store, request.name, rvn, request.rvn);
            }
            Ok(true)
        }
        None => not_released(not_held(store, &holder)),
    }
}

/// What the heir's own acquire would have stored after this release: a lock
/// deleted would be created anew with the heir's data; a lock kept passes its
/// data (the one released with, or the one it had) on within its role, as
/// [`data_change`] has it.
fn heirs_data<'a>(
    request: &ReleaseRequest<'a>,
    heir: &'a Heir,
    holder_role: RoleId,
) -> DataChange<'a> {
    let inherit = request.keep && heir.role == holder_role;
    match data_change(heir.data.as_deref(), heir.replace_data, inherit) {
        DataChange::Keep => request
            .data
            .map_or(DataChange::Keep, |kept| DataChange::Replace(Some(kept))),
        replaced => replaced,
    }
}

/// A release that found the caller not the holder: false, as the caller does
/// not hold the lock, or the error that says more (another role's lock).
fn not_released(why: ProtocolError) -> Result<bool, ProtocolError> {
    match why {
        ProtocolError::NotHeld { .. } => Ok(false),
        other => Err(other),
    }
}

/// Release every lock `owner` holds for the calling role (a client shutting
/// down); the number released.  Each is released like [`release`], under its
/// name's lock, so one that changed meanwhile (taken over) is left alone.
///
/// Each name's lock is given back right after its release: the row lock the
/// release took keeps other writers of that lock waiting until commit anyway,
/// and holding one name lock per lock would exhaust the server's shared lock
/// table for an owner with many thousands of locks.
pub fn release_all(store: &mut impl Store, owner: &str, keep: bool) -> i64 {
    let role = store.caller();
    let mut held = store.held_by(owner, role);
    // One order for every caller: two of them releasing overlapping sets wait
    // for each other's row locks in the same order and cannot deadlock.
    held.sort_by_cached_key(|(name, _)| store.name_lock_key(name));
    let mut released = 0;
    for (name, rvn) in &held {
        let holder = Holder {
            name,
            owner,
            rvn: *rvn,
            role,
        };
        store.lock_name(name);
        match store.release(&holder, keep, None) {
            Some(Released::Kept { rvn: new_rvn }) => {
                rvn_above(store, name, new_rvn, *rvn);
                released += 1;
            }
            Some(Released::Deleted) => released += 1,
            None => {}
        }
        store.unlock_name(name);
    }
    released
}

/// Delete the lock `name` whoever holds it: an operator's way out for a lock
/// whose holder role was dropped.  False, holding nothing, if there was none.
pub fn force_release(store: &mut impl Store, name: &str) -> bool {
    store.lock_name(name);
    let deleted = store.force_delete(name);
    if !deleted {
        store.unlock_name(name);
    }
    deleted
}

#[derive(Debug, Clone, Copy)]
pub struct FenceRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    pub rvn: i64,
}

/// The holder's RVN, with the lock fenced until the caller's transaction ends:
/// no heartbeat, takeover or release of it by another transaction can commit
/// before that transaction does (they wait, or, if they must not wait, count the
/// lock as busy).  Writes nothing.  An error, holding nothing, if the caller does
/// not hold the lock, exactly as a failed [`heartbeat`] says it.
///
/// The name's shared lock comes first, so the check sees every earlier writer of
/// the name committed; then the holder's row is share-locked under the holder's
/// exact condition, which also waits out a bulk write still in progress.  Fences
/// of one lock share both locks: several transactions of its holder may fence it
/// at once.
pub fn fence(store: &mut impl Fencing, request: &FenceRequest<'_>) -> Result<i64, ProtocolError> {
    let holder = caller_as_holder(store, request.name, request.owner, request.rvn);
    store.lock_name_shared(request.name);
    match store.fence(&holder) {
        Some(rvn) => Ok(rvn),
        None => {
            let current = store.read(holder.name, Fields::WithoutData);
            store.unlock_name_shared(holder.name);
            Err(why_not_held(current.as_ref(), &holder))
        }
    }
}

/// Renew each lock of `locks` (name and the caller's latest RVN of it) that
/// `owner` holds for the calling role, as [`heartbeat`] does with its data kept
/// and `lease`, if given, as its new lease.  The new RVN of each, in the order
/// given; `None` for a lock the caller does not hold (lost, released, another
/// role's), which is left alone without an error.  Names are expected to be
/// distinct: a repeated name's second renewal would find its RVN moved on.
///
/// Names are locked one at a time in [`Store::name_lock_key`] order, so two
/// calls over overlapping names wait for each other in one order and cannot
/// deadlock.  As in [`release_all`], each name's lock is given back right after
/// its write: the row lock the write took keeps other writers of that lock
/// waiting until commit anyway, and one name lock per lock held to the end would
/// exhaust the server's shared lock table for thousands of locks.
pub fn heartbeat_many(
    store: &mut impl Store,
    owner: &str,
    locks: &[(&str, i64)],
    lease: Option<&Lease>,
) -> Vec<Option<i64>> {
    let role = store.caller();
    let mut order: Vec<usize> = (0..locks.len()).collect();
    order.sort_by_cached_key(|&index| store.name_lock_key(locks[index].0));
    let mut renewed = vec![None; locks.len()];
    for index in order {
        let (name, rvn) = locks[index];
        let holder = Holder {
            name,
            owner,
            rvn,
            role,
        };
        if lock_name_as(store, &holder).is_err() {
            continue;
        }
        if let Some(new_rvn) = store.heartbeat(&holder, DataChange::Keep, lease) {
            renewed[index] = Some(rvn_above(store, name, new_rvn, rvn));
        }
        store.unlock_name(name);
    }
    renewed
}
