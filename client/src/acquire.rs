//! Taking a lock: at once or not at all ([`Client::try_acquire`]), or waiting
//! through the RVN protocol ([`Client::acquire`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::client::Client;
use crate::connection::Failure;
use crate::error::Error;
use crate::lock::{Acquired, Held, Lock};
use crate::options::AcquireOptions;
use crate::sql::AcquireCall;

/// The outcome of [`Client::try_acquire`].
#[derive(Debug)]
pub enum Attempt {
    Acquired(Lock),
    /// Someone else holds the lock (or this owner does, through another `Lock`).
    Held(Holder),
}

impl Attempt {
    /// The lock, if acquired.
    pub fn into_lock(self) -> Option<Lock> {
        match self {
            Attempt::Acquired(lock) => Some(lock),
            Attempt::Held(_) => None,
        }
    }
}

/// The holder of a lock, as a refused acquire shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: String,
    pub rvn: i64,
    /// The holder's lease: how long its RVN must stand still before a takeover.
    pub lease: Duration,
    pub data: Option<Vec<u8>>,
}

impl Client {
    /// Takes the lock `name`, waiting as long as it takes; see [`Client::acquire_with`].
    pub async fn acquire(&self, name: &str) -> Result<Lock, Error> {
        self.acquire_with(name, &AcquireOptions::default()).await
    }

    /// Takes the lock `name`, waiting while someone else holds it.
    ///
    /// Each refusal shows the holder's RVN and lease. The client asks again every
    /// poll interval (so a release is noticed at the next poll), and once the same
    /// RVN has stood still for the holder's whole lease, measured on a monotonic
    /// clock from the refusal that first showed it, asks with that RVN as
    /// `observed_rvn` and takes the lock over. A holder that heartbeats moves its
    /// RVN and restarts the wait.
    ///
    /// Dropping this future while a call is in flight may leave the lock taken in
    /// the server with no `Lock` to renew it: it lapses after this client's lease.
    pub async fn acquire_with(&self, name: &str, options: &AcquireOptions) -> Result<Lock, Error> {
        let deadline = options
            .wait_at_most
            .map(|limit| (Instant::now() + limit, limit));
        loop {
            if let Attempt::Acquired(lock) = self.try_acquire_with(name, options).await? {
                return Ok(lock);
            }
            let now = Instant::now();
            if let Some((deadline, limit)) = deadline {
                if now >= deadline {
                    return Err(Error::Timeout {
                        operation: "acquire",
                        after: limit,
                    });
                }
            }
            let poll = self.config().poll_interval();
            let until = deadline.map(|(deadline, _)| deadline);
            let wake = self.seen().next_attempt(name, now, poll, until);
            sleep_until(wake).await;
        }
    }

    /// One try at the lock `name`, without waiting; see [`Client::try_acquire_with`].
    pub async fn try_acquire(&self, name: &str) -> Result<Attempt, Error> {
        self.try_acquire_with(name, &AcquireOptions::default())
            .await
    }

    /// One try at the lock `name`: [`Attempt::Acquired`] if it was free, or
    /// [`Attempt::Held`] with its holder, at once.
    ///
    /// The client remembers, per lock name, the holder's RVN and when it first saw
    /// it. A later try that finds the same RVN standing still for the holder's whole
    /// lease passes it as `observed_rvn`, taking a dead holder's lock over: calling
    /// `try_acquire` now and then is enough to get a lock whose holder died. What
    /// was seen of a lock is forgotten when this client acquires it.
    pub async fn try_acquire_with(
        &self,
        name: &str,
        options: &AcquireOptions,
    ) -> Result<Attempt, Error> {
        let config = self.config();
        let call = AcquireCall {
            lease: config.lease(),
            data: options.data.as_deref(),
            replace_data: options.replace_data,
            observed_rvn: self.seen().takeover_rvn(name, Instant::now()),
        };
        let presented = call.observed_rvn;
        let sent = Instant::now();
        let owner = config.owner();
        let row = self
            .connection()
            .call(config.call_timeout(), "pglock_acquire", |sql| async move {
                sql.acquire(name, owner, &call).await
            })
            .await
            .map_err(Failure::into_error)?;
        if row.acquired {
            self.seen().forget(name);
            return Ok(Attempt::Acquired(self.hold(name, row.rvn, row.data, sent)));
        }
        self.seen()
            .refused(name, row.rvn, row.lease, Instant::now(), presented);
        Ok(Attempt::Held(Holder {
            owner: row.owner,
            rvn: row.rvn,
            lease: row.lease,
            data: row.data,
        }))
    }

    /// The lock `name`, just acquired at `rvn` with `data` by a request sent at
    /// `sent`, handed to the renewer.
    pub(crate) fn hold(&self, name: &str, rvn: i64, data: Option<Vec<u8>>, sent: Instant) -> Lock {
        let config = self.config();
        let held = Arc::new(Held::new(name.to_owned(), config.owner().to_owned(), rvn));
        let key = self.renewer().register(Arc::clone(&held), sent);
        let acquired = Acquired {
            held,
            lease: config.lease(),
            data,
            call_timeout: config.call_timeout(),
        };
        Lock::new(acquired, Arc::clone(self.renewer()), key)
    }
}
