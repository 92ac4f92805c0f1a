//! Semaphores: at most `slots` holders of one semaphore at once.
//!
//! A semaphore is no object of its own: it is its slots, ordinary locks named
//! [`slot_name`] (`<name>#1` to `<name>#<slots>`), and a holder holds exactly one
//! of them, which it heartbeats, fences and releases like any lock.  Acquiring a
//! slot tries the slots in order, lowest first, and takes the first one that is
//! free (missing or released), or, when waiting, the first one whose holder's RVN
//! stood still for that holder's lease, under the same rules as the waiting
//! acquire: one watch per slot, polls that read no data and never queue for a
//! name another transaction is writing, a deadline that bounds the whole wait.
//!
//! The slot count is the caller's: a caller passing `slots` only ever looks at
//! slots 1 to `slots`.  Callers agreeing on the count share exactly that many; a
//! caller passing fewer neither sees nor takes the slots above its count.

use std::time::Duration;

use crate::error::ProtocolError;
use crate::lock::Lease;
use crate::steps::{attempt, AcquireRequest, Attempt, Attempted};
use crate::store::{Fields, Store};
use crate::waiting::{server_poll, Clock, Watch, MIN_SERVER_POLL};

/// The name of slot `slot` (counted from 1) of semaphore `name`.
pub fn slot_name(name: &str, slot: u32) -> String {
    format!("{name}#{slot}")
}

#[derive(Debug, Clone, Copy)]
pub struct SlotRequest<'a> {
    pub name: &'a str,
    pub owner: &'a str,
    /// How many slots the semaphore has, by this caller's count (at least 1).
    pub slots: u32,
    pub lease: Lease,
    /// The slot's data: stored as given (NULL included), never inherited from a
    /// slot's earlier holder, since slots are interchangeable.
    pub data: Option<&'a [u8]>,
}

/// A slot taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub slot_name: String,
    pub rvn: i64,
    /// Taken over from a holder whose RVN stood still (not a free slot).
    pub taken_over: bool,
}

/// Take a slot of `request`'s semaphore in `backend`, waiting until `deadline`
/// (`None`: no deadline; a deadline already passed: one pass over the slots that
/// takes only a free one).  `None` if every slot stayed held.  A pass that takes
/// nothing holds nothing.
pub fn acquire_slot(
    backend: &mut (impl Store + Clock),
    request: &SlotRequest<'_>,
    deadline: Option<Duration>,
) -> Result<Option<Slot>, ProtocolError> {
    let names: Vec<String> = (1..=request.slots)
        .map(|slot| slot_name(request.name, slot))
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let mut watches: Vec<Option<Watch>> = vec![None; names.len()];
    let how = Attempt {
        wait_for_name: false,
        holder_data: Fields::WithoutData,
    };
    loop {
        let now = backend.now();
        let last = deadline.is_some_and(|deadline| now >= deadline);
        for (name, watch) in names.iter().zip(watches.iter_mut()) {
            let presented = watch.and_then(|watch| watch.observed_rvn(now));
            let slot_request = AcquireRequest {
                name,
                owner: request.owner,
                lease: request.lease,
                data: request.data,
                replace_data: true,
                observed_rvn: presented,
            };
            let holder = match attempt(backend, &slot_request, how)? {
                Attempted::Done(outcome) if outcome.acquired => {
                    return Ok(Some(Slot {
                        slot_name: name.clone(),
                        rvn: outcome.rvn,
                        taken_over: outcome.taken_over,
                    }))
                }
                Attempted::Done(refused) => Some((refused.rvn, refused.lease)),
                // Being written by another transaction: held, for now.
                Attempted::NameBusy { current } => current.map(|lock| (lock.rvn, lock.lease)),
            };
            if let Some((rvn, lease)) = holder {
                let seen_at = backend.now();
                *watch = Some(Watch::after_refusal(
                    *watch,
                    rvn,
                    lease.as_duration(),
                    seen_at,
                    presented,
                ));
            }
        }
        if last {
            return Ok(None);
        }
        let now = backend.now();
        let first_poll = deadline.map_or(now + MIN_SERVER_POLL, |deadline| {
            deadline.min(now + MIN_SERVER_POLL)
        });
        let wake = watches
            .iter()
            .map(|watch| match watch {
                Some(watch) => watch.next_attempt(now, server_poll(watch.holder_lease), deadline),
                // Only a slot being created by an open transaction has no watch.
                None => first_poll,
            })
            .min()
            .unwrap_or(first_poll);
        backend.sleep_until(wake.max(now));
    }
}
