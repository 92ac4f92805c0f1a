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
//! Slot waiters queue per semaphore in the server, apart from waiters for one
//! lock: a write to any slot wakes the first of them.
//!
//! The slot count is the caller's: a caller passing `slots` only ever looks at
//! slots 1 to `slots`.  Callers agreeing on the count share exactly that many; a
//! caller passing fewer neither sees nor takes the slots above its count.

use std::time::Duration;

use crate::error::ProtocolError;
use crate::lock::Lease;
use crate::steps::AcquireRequest;
use crate::store::{Fields, Queue, Store};
use crate::waiting::{drive, Clock, Wait, WaitEnded};

pub use crate::slot_names::{semaphore_of, slot_name};

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

/// Take a slot of `request`'s semaphore in `backend`, waiting in the
/// semaphore's queue until `deadline` (`None`: no deadline; a deadline already
/// passed: one pass over the slots, which takes a free one, or a dead holder's
/// the server saw stand still).  `None` if every slot stayed held.  A pass that
/// takes nothing holds nothing.
pub fn acquire_slot(
    backend: &mut (impl Store + Clock),
    request: &SlotRequest<'_>,
    deadline: Option<Duration>,
) -> Result<Option<Slot>, ProtocolError> {
    let names: Vec<String> = (1..=request.slots)
        .map(|slot| slot_name(request.name, slot))
        .collect();
    let mut wait = Wait::new(names.len(), deadline, Vec::new(), Fields::WithoutData);
    let ended = drive(
        backend,
        &mut wait,
        Queue::Slots(request.name),
        |target, observed_rvn| AcquireRequest {
            name: &names[target],
            owner: request.owner,
            lease: request.lease,
            data: request.data,
            replace_data: true,
            observed_rvn,
        },
    )?;
    Ok(match ended {
        WaitEnded::Taken { target, outcome } => Some(Slot {
            slot_name: names[target].clone(),
            rvn: outcome.rvn,
            taken_over: outcome.taken_over,
        }),
        WaitEnded::TimedOut { .. } => None,
    })
}
