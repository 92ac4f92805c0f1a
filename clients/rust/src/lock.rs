//! A held lock: its fencing token, its place in the client's renewer, its loss
//! signal, its release.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::connection::Failure;
use crate::error::{Error, LostReason};
use crate::held::Held;
use crate::renewer::Renewer;

/// A lock this client holds, renewed in the background every heartbeat period
/// (with every other lock of the client, in one call).
///
/// * [`Lock::rvn`] is the lock's current RVN, a fencing token that only grows: it
///   changes with every heartbeat.
/// * [`Lock::lost_token`] is a [`CancellationToken`] that is cancelled the moment the
///   lock is lost (see [when a lock is lost](crate#when-a-lock-is-lost)), and also when the `Lock` is
///   released or dropped: once it fires, nothing may be done under the lock any more.
///   Await it with [`Lock::lost`] or `token.cancelled()`, e.g. in `tokio::select!`.
/// * [`Lock::release`] and [`Lock::release_keeping`] stop the heartbeat, let a
///   heartbeat in flight finish, then release with the latest RVN.
/// * **Dropping a `Lock` without releasing it** stops its heartbeat and fires the token,
///   but writes nothing (drop cannot wait for the server): the lock stays taken until
///   its lease lapses, after which any client takes it over.
#[derive(Debug)]
pub struct Lock {
    held: Arc<Held>,
    renewer: Arc<Renewer>,
    /// The lock's key in the renewer's registry.
    key: u64,
    lease: Duration,
    data: Option<Vec<u8>>,
    call_timeout: Option<Duration>,
}

/// What [`Lock::new`] needs besides its place in the renewer.
pub(crate) struct Acquired {
    pub held: Arc<Held>,
    pub lease: Duration,
    pub data: Option<Vec<u8>>,
    pub call_timeout: Option<Duration>,
}

impl Lock {
    pub(crate) fn new(acquired: Acquired, renewer: Arc<Renewer>, key: u64) -> Self {
        Self {
            held: acquired.held,
            renewer,
            key,
            lease: acquired.lease,
            data: acquired.data,
            call_timeout: acquired.call_timeout,
        }
    }

    pub fn name(&self) -> &str {
        self.held.name()
    }

    pub fn owner(&self) -> &str {
        self.held.owner()
    }

    /// The lock's current RVN (fencing token), as of the last successful heartbeat.
    pub fn rvn(&self) -> i64 {
        self.held.rvn()
    }

    /// The lease this lock was taken with.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The lock's data when it was acquired: what the acquire stored, or what the
    /// previous holder left with a keeping release.
    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// Whether the lock has been lost.
    pub fn is_lost(&self) -> bool {
        self.held.is_lost()
    }

    /// Why the lock was lost, once it has been.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.held.reason()
    }

    /// A token cancelled when the lock is lost, released or dropped.
    pub fn lost_token(&self) -> CancellationToken {
        self.held.lost_token().clone()
    }

    /// Completes when the lock is lost.
    pub async fn lost(&self) {
        self.held.lost_token().cancelled().await;
    }

    /// Releases the lock, deleting it. Fails with [`Error::LockLost`] if the server
    /// no longer had it at our RVN (it was taken over, or a heartbeat reply was lost).
    pub async fn release(self) -> Result<(), Error> {
        self.finish(false, None).await
    }

    /// Releases the lock but keeps its row with `data` (or, with `None`, the data it
    /// has), for the next holder to find in [`Lock::data`]. Fails like [`Lock::release`].
    pub async fn release_keeping(self, data: Option<&[u8]>) -> Result<(), Error> {
        self.finish(true, data).await
    }

    async fn finish(self, keep: bool, data: Option<&[u8]>) -> Result<(), Error> {
        // Out of the renewer, and any renewal in flight over: the RVN is the latest.
        self.renewer.stop(self.key, &self.held).await;
        let held = Arc::clone(&self.held);
        let (name, owner, rvn) = (held.name(), held.owner(), held.rvn());
        let released = self
            .renewer
            .connection()
            .call(self.call_timeout, "pglock_release", |sql| async move {
                sql.release(name, owner, rvn, keep, data).await
            })
            .await
            .map_err(Failure::into_error);
        held.lost_token().cancel();
        match released? {
            true => Ok(()),
            false => Err(Error::LockLost {
                name: held.name().to_owned(),
                reason: held.reason().unwrap_or(LostReason::NotHeld),
            }),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewer.remove(self.key);
        self.held.lost_token().cancel();
    }
}
