//! Taking a lock: at once or not at all ([`Client::try_acquire`]), or waiting
//! ([`Client::acquire`]): in the server where it waits for us, else through the
//! protocol's waiting machine, polling.

use std::sync::Arc;
use std::time::Duration;

use pglock_protocol::{Fields, Next, Seen, Wait};
use tokio::time::{sleep_until, Instant};

use crate::client::Client;
use crate::connection::Failure;
use crate::error::Error;
use crate::held::Held;
use crate::lock::{Acquired, Lock};
use crate::options::AcquireOptions;
use crate::sql::{AcquireCall, AcquireRow};
use crate::waits::Waits;

/// The outcome of [`Client::try_acquire`]: the lock taken, or who holds it, or
/// that others wait for it first.
#[derive(Debug)]
pub enum TryAcquireOutcome {
    Acquired(Lock),
    /// Someone else holds the lock (or this owner does, through another `Lock`).
    Held(HeldBy),
    /// Nobody holds the lock, but others wait for it in the server's queue and
    /// get it first: an attempt does not jump the queue.
    Queued,
}

impl TryAcquireOutcome {
    /// The lock, if acquired.
    pub fn into_lock(self) -> Option<Lock> {
        match self {
            TryAcquireOutcome::Acquired(lock) => Some(lock),
            TryAcquireOutcome::Held(_) | TryAcquireOutcome::Queued => None,
        }
    }
}

/// Who holds a lock, as a refused acquire shows it: the lock is held by this
/// owner, at this RVN, for this lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    pub owner: String,
    pub rvn: i64,
    /// The holder's lease: how long its RVN must stand still before a takeover.
    pub lease: Duration,
    pub data: Option<Vec<u8>>,
}

/// What the client learnt from one refused attempt, as the protocol's machine
/// needs it.
pub(crate) fn seen(row: &AcquireRow) -> Option<Seen> {
    row.holder.as_ref().map(|holder| Seen {
        rvn: holder.rvn,
        lease: holder.lease,
        stood_still: None,
    })
}

impl Client {
    /// Takes the lock `name`, waiting as long as it takes; see [`Client::acquire_with`].
    pub async fn acquire(&self, name: &str) -> Result<Lock, Error> {
        self.acquire_with(name, &AcquireOptions::default()).await
    }

    /// Takes the lock `name`, waiting while someone else holds it.
    ///
    /// Where the server waits for the client (see [Waiting](crate#waiting)),
    /// the wait runs there, on a connection of the client's own: the lock comes
    /// the moment its holder releases it, waiters are served in the order they
    /// came, and a holder the server saw fall silent for its lease is taken
    /// over at once. Elsewhere the client polls: each refusal shows the
    /// holder's RVN and lease, the client asks again every poll interval (so a
    /// release is noticed at the next poll), and once the same RVN has stood
    /// still for the holder's whole lease, measured on a monotonic clock from the
    /// refusal that first showed it, asks with that RVN as `observed_rvn` and
    /// takes the lock over. A holder that heartbeats moves its RVN and restarts
    /// the wait.
    ///
    /// Dropping this future while a call is in flight may leave the lock taken in
    /// the server with no `Lock` to renew it: it lapses after this client's lease.
    pub async fn acquire_with(&self, name: &str, options: &AcquireOptions) -> Result<Lock, Error> {
        let deadline = options
            .wait_at_most
            .map(|limit| (Instant::now() + limit, limit));
        // One plain try first, on the client's own connection: a free lock needs
        // no wait, nor a connection to wait on.
        let first = self
            .try_acquire_within(name, options, self.limit_before(deadline))
            .await?;
        if let TryAcquireOutcome::Acquired(lock) = first {
            return Ok(lock);
        }
        if let Some(waits) = self.server_waits().await {
            return self.acquire_in_server(waits, name, options, deadline).await;
        }
        let mut wait = {
            let seen = self.seen();
            let until = deadline.map(|(deadline, _)| seen.elapsed(deadline));
            Wait::new(1, until, vec![seen.watch(name)], Fields::WithoutData)
                .polling_every(self.config().poll_interval())
        };
        loop {
            let next = {
                let seen = self.seen();
                wait.next(seen.elapsed(Instant::now()), false)
            };
            match next {
                Next::Attempt { observed_rvn, .. } => {
                    let limit = self.limit_before(deadline);
                    let (row, sent) = self.attempt(name, options, observed_rvn, limit).await?;
                    if row.acquired {
                        self.seen().forget(name);
                        let rvn = row.holder.map_or(0, |holder| holder.rvn);
                        return Ok(self.hold(name, rvn, row.data, sent));
                    }
                    let mut seen = self.seen();
                    wait.refused(seen.elapsed(Instant::now()), self::seen(&row));
                    seen.keep(name, wait.watches()[0]);
                }
                Next::Sleep { until } => {
                    let wake = self.seen().instant(until);
                    sleep_until(wake).await;
                }
                Next::TimedOut => {
                    return Err(Error::Timeout {
                        operation: "acquire",
                        after: deadline.map_or(Duration::ZERO, |(_, limit)| limit),
                    })
                }
            }
        }
    }

    /// The wait in the server, in calls of at most one heartbeat period: a lock
    /// taken at the end of one is still safe, by the client's rule, when its
    /// answer arrives, with the first renewal due.
    async fn acquire_in_server(
        &self,
        waits: &Waits,
        name: &str,
        options: &AcquireOptions,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Lock, Error> {
        let config = self.config();
        let owner = config.owner();
        let call = AcquireCall {
            lease: config.lease(),
            data: options.data.as_deref(),
            replace_data: options.replace_data,
            observed_rvn: None,
        };
        loop {
            let sent = Instant::now();
            let wait = deadline.map_or(config.heartbeat_period(), |(deadline, _)| {
                deadline
                    .saturating_duration_since(sent)
                    .min(config.heartbeat_period())
            });
            // The server answers once `wait` is over; its answer has a
            // heartbeat period to come back (or the call's own limit).
            let limit = match (config.call_timeout(), deadline) {
                (Some(limit), _) => Some(limit + wait),
                (None, Some(_)) => Some(wait + config.heartbeat_period()),
                (None, None) => None,
            };
            let call = &call;
            let row = waits
                .call(limit, "pglock_acquire_wait", |sql| async move {
                    sql.acquire_wait(name, owner, call, wait).await
                })
                .await?;
            if row.acquired {
                self.seen().forget(name);
                let rvn = row.holder.map_or(0, |holder| holder.rvn);
                return Ok(self.hold(name, rvn, row.data, sent));
            }
            if let Some((deadline, limit)) = deadline {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        operation: "acquire",
                        after: limit,
                    });
                }
            }
        }
    }

    /// One try at the lock `name`, without waiting; see [`Client::try_acquire_with`].
    pub async fn try_acquire(&self, name: &str) -> Result<TryAcquireOutcome, Error> {
        self.try_acquire_with(name, &AcquireOptions::default())
            .await
    }

    /// One try at the lock `name`: [`TryAcquireOutcome::Acquired`] if it was
    /// free (or its holder's RVN stood still for its lease),
    /// [`TryAcquireOutcome::Held`] with who holds it, or
    /// [`TryAcquireOutcome::Queued`] if others wait for it in the server first,
    /// at once.
    ///
    /// The client remembers, per lock name, the holder's RVN and when it first saw
    /// it. A later try that finds the same RVN standing still for the holder's whole
    /// lease passes it as `observed_rvn`, taking a dead holder's lock over: calling
    /// `try_acquire` now and then is enough to get a lock whose holder died. (Where
    /// pglock is preloaded, the server also takes a holder over that it saw fall
    /// silent for its lease, on the first try.) What was seen of a lock is
    /// forgotten when this client acquires it.
    pub async fn try_acquire_with(
        &self,
        name: &str,
        options: &AcquireOptions,
    ) -> Result<TryAcquireOutcome, Error> {
        self.try_acquire_within(name, options, self.config().call_timeout())
            .await
    }

    /// The time limit of a call made at `now` by a waiting acquire whose
    /// deadline is `deadline`: the time left plus one heartbeat period (an
    /// answer on its way when the wait ends still counts), and never more than
    /// the client's call timeout. A call on a connection that went silent (a
    /// host cut off, a server that stopped answering) so ends with the wait,
    /// not when TCP gives up. Dropped at its limit, a call may still have taken
    /// the lock in the server: it lapses after its lease, as when the future is
    /// dropped.
    fn limit_before(&self, deadline: Option<(Instant, Duration)>) -> Option<Duration> {
        let config = self.config();
        let Some((deadline, _)) = deadline else {
            return config.call_timeout();
        };
        let left = deadline.saturating_duration_since(Instant::now()) + config.heartbeat_period();
        Some(config.call_timeout().map_or(left, |limit| limit.min(left)))
    }

    /// [`Client::try_acquire_with`], its call limited to `limit`.
    async fn try_acquire_within(
        &self,
        name: &str,
        options: &AcquireOptions,
        limit: Option<Duration>,
    ) -> Result<TryAcquireOutcome, Error> {
        let presented = self.seen().takeover_rvn(name, Instant::now());
        let (row, sent) = self.attempt(name, options, presented, limit).await?;
        if row.acquired {
            self.seen().forget(name);
            let rvn = row.holder.as_ref().map_or(0, |holder| holder.rvn);
            return Ok(TryAcquireOutcome::Acquired(
                self.hold(name, rvn, row.data, sent),
            ));
        }
        let Some(holder) = row.holder else {
            return Ok(TryAcquireOutcome::Queued);
        };
        self.seen()
            .refused(name, holder.rvn, holder.lease, Instant::now(), presented);
        Ok(TryAcquireOutcome::Held(HeldBy {
            owner: holder.owner,
            rvn: holder.rvn,
            lease: holder.lease,
            data: row.data,
        }))
    }

    /// One `pglock_acquire` of `name`, presenting `observed_rvn`, abandoned
    /// after `limit`: its row, and when the request was sent.
    pub(crate) async fn attempt(
        &self,
        name: &str,
        options: &AcquireOptions,
        observed_rvn: Option<i64>,
        limit: Option<Duration>,
    ) -> Result<(AcquireRow, Instant), Error> {
        let config = self.config();
        let call = AcquireCall {
            lease: config.lease(),
            data: options.data.as_deref(),
            replace_data: options.replace_data,
            observed_rvn,
        };
        let sent = Instant::now();
        let owner = config.owner();
        let row = self
            .connection()
            .call(limit, "pglock_acquire", |sql| async move {
                sql.acquire(name, owner, &call).await
            })
            .await
            .map_err(Failure::into_error)?;
        Ok((row, sent))
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
