//! What a held lock's [`Lock`](crate::Lock) and the client's renewer share:
//! its name, owner and latest RVN, its loss signal and reason, and the renewal
//! call it is in. Both hold it; it knows neither.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::error::LostReason;

/// What a [`Lock`](crate::Lock) shares with the client's renewer.
#[derive(Debug)]
pub(crate) struct Held {
    name: String,
    owner: String,
    rvn: AtomicI64,
    lost: CancellationToken,
    reason: Mutex<Option<LostReason>>,
    /// Cancelled once the renewal call that includes the lock, if one is out,
    /// is over (set and cleared by the renewer).
    call_in_flight: Mutex<Option<CancellationToken>>,
}

impl Held {
    pub fn new(name: String, owner: String, rvn: i64) -> Self {
        Self {
            name,
            owner,
            rvn: AtomicI64::new(rvn),
            lost: CancellationToken::new(),
            reason: Mutex::new(None),
            call_in_flight: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn rvn(&self) -> i64 {
        self.rvn.load(Ordering::SeqCst)
    }

    pub fn set_rvn(&self, rvn: i64) {
        self.rvn.store(rvn, Ordering::SeqCst);
    }

    /// Records why the lock was lost (the first reason wins) and fires the signal.
    pub fn mark_lost(&self, reason: LostReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.lost.cancel();
    }

    /// Narrows a loss recorded as [`LostReason::NotHeld`] to
    /// [`LostReason::HeldByOtherRole`], once the lock's row shows why it was not
    /// renewed. The only reason ever replaced: otherwise the first one wins.
    pub fn lost_to_other_role(&self) {
        let mut reason = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if *reason == Some(LostReason::NotHeld) {
            *reason = Some(LostReason::HeldByOtherRole);
        }
    }

    pub fn reason(&self) -> Option<LostReason> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// The loss signal, which the `Lock` also fires when it is released or
    /// dropped.
    pub fn lost_token(&self) -> &CancellationToken {
        &self.lost
    }

    pub fn set_call_in_flight(&self, call: Option<CancellationToken>) {
        *self
            .call_in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = call;
    }

    pub fn call_in_flight(&self) -> Option<CancellationToken> {
        self.call_in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Held {
        Held::new("a".to_owned(), "worker".to_owned(), 1)
    }

    #[test]
    fn a_loss_not_held_narrows_to_another_role_and_nothing_else_changes() {
        let not_held = held();
        not_held.mark_lost(LostReason::NotHeld);
        not_held.lost_to_other_role();
        assert_eq!(not_held.reason(), Some(LostReason::HeldByOtherRole));

        let failed = held();
        let heartbeats_failed = LostReason::HeartbeatsFailed { last_error: None };
        failed.mark_lost(heartbeats_failed.clone());
        failed.mark_lost(LostReason::NotHeld);
        failed.lost_to_other_role();
        assert_eq!(failed.reason(), Some(heartbeats_failed));

        let kept = held();
        kept.lost_to_other_role();
        assert_eq!(kept.reason(), None);
        assert!(!kept.is_lost());
    }
}
