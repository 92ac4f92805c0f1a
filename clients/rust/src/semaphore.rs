//! Semaphores: one of at most `slots` holders of a name, at once
//! ([`Client::try_acquire_slot`]) or waiting ([`Client::acquire_slot`]).
//!
//! A slot is an ordinary lock named by the protocol's [`slot_name`], so the
//! [`Lock`] that holds it is renewed, lost and released like any other. A
//! waiting acquire waits in the server where it can (`pglock_acquire_slot` with
//! a `wait_timeout`, on a connection of its own: see [Waiting](crate#waiting)),
//! and otherwise drives the protocol's waiting machine over the slots, each
//! attempt a `pglock_acquire` of one slot, watching each slot's holder by the
//! same rule as [`Client::acquire`].

use std::time::Duration;

use pglock_protocol::semaphore::slot_name;
use pglock_protocol::{arguments, Fields, Next, Wait};
use tokio::time::{sleep_until, Instant};

use crate::client::Client;
use crate::config::ConfigError;
use crate::error::Error;
use crate::lock::Lock;
use crate::options::AcquireOptions;
use crate::sql::SlotRow;
use crate::waits::Waits;

impl Client {
    /// A slot of semaphore `name` of `slots` slots, without waiting; see
    /// [`Client::try_acquire_slot_with`].
    pub async fn try_acquire_slot(&self, name: &str, slots: u32) -> Result<Option<Lock>, Error> {
        self.try_acquire_slot_with(name, slots, &AcquireOptions::default())
            .await
    }

    /// One try at a slot of semaphore `name`, which has `slots` slots (1 to
    /// [`MAX_SLOTS`](crate::MAX_SLOTS)): the [`Lock`] of the slot taken, named
    /// `name#k`, or `None` if every slot is held (or others wait for them in
    /// the server first).
    ///
    /// The slots are tried in order, lowest first, one `pglock_acquire` each,
    /// until one is taken: a free one, one whose holder the server saw fall
    /// silent for its lease, or one whose holder's RVN this client saw stand
    /// still for its lease (it remembers each holder's RVN, as
    /// [`Client::try_acquire`] does). Calling `try_acquire_slot` now and then is
    /// enough to get the slot of a holder that died.
    ///
    /// The slot stores `options`' data, or none: slots are interchangeable, so a
    /// slot never passes its previous holder's data on. `wait_at_most` is ignored.
    pub async fn try_acquire_slot_with(
        &self,
        name: &str,
        slots: u32,
        options: &AcquireOptions,
    ) -> Result<Option<Lock>, Error> {
        slot_count(slots)?;
        let names = slot_names(name, slots);
        let now = self.seen().elapsed(Instant::now());
        self.poll_slots(&names, options, Some(now)).await
    }

    /// A slot of semaphore `name` of `slots` slots, waiting as long as it takes;
    /// see [`Client::acquire_slot_with`].
    pub async fn acquire_slot(&self, name: &str, slots: u32) -> Result<Lock, Error> {
        self.acquire_slot_with(name, slots, &AcquireOptions::default())
            .await
    }

    /// A slot of semaphore `name`, which has `slots` slots (1 to
    /// [`MAX_SLOTS`](crate::MAX_SLOTS)), waiting while all are held: the
    /// [`Lock`] of the slot taken, named `name#k`.
    ///
    /// In the server, where it waits for the client: a slot freed is handed to
    /// the first waiter at once. Elsewhere, each pass is
    /// [`Client::try_acquire_slot_with`]'s, and between passes the client waits
    /// a poll interval, or less if a slot's holder's RVN will by then have stood
    /// still for its lease: a released slot is taken at the next poll, a dead
    /// holder's slot once its lease has run out since the client first saw its
    /// RVN, never before. With [`AcquireOptions::wait_at_most`] it gives up with
    /// [`Error::Timeout`] after the last try at the limit.
    ///
    /// Dropping this future while a call is in flight may leave a slot taken in
    /// the server with no `Lock` to renew it: it lapses after this client's lease.
    pub async fn acquire_slot_with(
        &self,
        name: &str,
        slots: u32,
        options: &AcquireOptions,
    ) -> Result<Lock, Error> {
        let count = slot_count(slots)?;
        let deadline = options
            .wait_at_most
            .map(|limit| (Instant::now() + limit, limit));
        let taken = match self.server_waits().await {
            Some(waits) => {
                self.slot_in_server(waits, name, count, options, deadline)
                    .await?
            }
            None => {
                let names = slot_names(name, slots);
                let until = deadline.map(|(deadline, _)| self.seen().elapsed(deadline));
                self.poll_slots(&names, options, until).await?
            }
        };
        taken.ok_or(Error::Timeout {
            operation: "acquire_slot",
            after: deadline.map_or(Duration::ZERO, |(_, limit)| limit),
        })
    }

    /// The wait in the server, in calls of at most one heartbeat period (see
    /// `acquire_in_server`); `None` at the deadline.
    async fn slot_in_server(
        &self,
        waits: &Waits,
        name: &str,
        count: i32,
        options: &AcquireOptions,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Option<Lock>, Error> {
        let config = self.config();
        let (owner, lease, data) = (config.owner(), config.lease(), options.data.as_deref());
        loop {
            let sent = Instant::now();
            let wait = deadline.map_or(config.heartbeat_period(), |(deadline, _)| {
                deadline
                    .saturating_duration_since(sent)
                    .min(config.heartbeat_period())
            });
            let limit = config.call_timeout().map(|limit| limit + wait);
            let row = waits
                .call(limit, "pglock_acquire_slot", |sql| async move {
                    sql.acquire_slot_wait(name, owner, count, lease, data, wait)
                        .await
                })
                .await?;
            if let SlotRow {
                acquired: true,
                slot_name: Some(slot),
                rvn: Some(rvn),
            } = row
            {
                self.seen().forget(&slot);
                return Ok(Some(self.hold(&slot, rvn, options.data.clone(), sent)));
            }
            if deadline.is_some_and(|(deadline, _)| Instant::now() >= deadline) {
                return Ok(None);
            }
        }
    }

    /// The protocol's waiting machine over the slots `names`, until `until`
    /// (on the seen-clock; one already passed: one pass), polling.
    async fn poll_slots(
        &self,
        names: &[String],
        options: &AcquireOptions,
        until: Option<Duration>,
    ) -> Result<Option<Lock>, Error> {
        // Data as pglock_acquire_slot stores it: as given, none included.
        let per_slot = AcquireOptions {
            data: options.data.clone(),
            replace_data: true,
            wait_at_most: None,
        };
        let watches = {
            let seen = self.seen();
            names.iter().map(|slot| seen.watch(slot)).collect()
        };
        let mut wait = Wait::new(names.len(), until, watches, Fields::WithoutData)
            .polling_every(self.config().poll_interval());
        loop {
            let next = {
                let seen = self.seen();
                wait.next(seen.elapsed(Instant::now()), false)
            };
            match next {
                Next::Attempt {
                    target,
                    observed_rvn,
                    ..
                } => {
                    let slot = &names[target];
                    let limit = self.config().call_timeout();
                    let (row, sent) = self.attempt(slot, &per_slot, observed_rvn, limit).await?;
                    if row.acquired {
                        self.seen().forget(slot);
                        let rvn = row.holder.map_or(0, |holder| holder.rvn);
                        return Ok(Some(self.hold(slot, rvn, row.data, sent)));
                    }
                    let mut seen = self.seen();
                    wait.refused(seen.elapsed(Instant::now()), crate::acquire::seen(&row));
                    seen.keep(slot, wait.watches()[target]);
                }
                Next::Sleep { until } => {
                    let wake = self.seen().instant(until);
                    sleep_until(wake).await;
                }
                Next::TimedOut => return Ok(None),
            }
        }
    }
}

/// `slots` as the server's `integer`, if the server's rule allows it.
fn slot_count(slots: u32) -> Result<i32, Error> {
    let count = arguments::slots("slots", i64::from(slots)).map_err(ConfigError::from)?;
    // 1 to MAX_SLOTS, a thousand: an `integer` for sure.
    Ok(count as i32)
}

fn slot_names(name: &str, slots: u32) -> Vec<String> {
    (1..=slots).map(|slot| slot_name(name, slot)).collect()
}

#[cfg(test)]
mod tests {
    use pglock_protocol::ArgumentError;

    use super::*;
    use crate::config::MAX_SLOTS;

    #[test]
    fn slot_counts_outside_the_servers_limits_are_refused() {
        for slots in [0, MAX_SLOTS + 1, u32::MAX] {
            assert!(
                matches!(
                    slot_count(slots),
                    Err(Error::Config(ConfigError::Argument(ArgumentError::SlotsOutOfRange {
                        argument: "slots",
                        slots: refused
                    }))) if refused == i64::from(slots)
                ),
                "{slots}"
            );
        }
        assert_eq!(slot_count(1).ok(), Some(1));
        assert_eq!(slot_count(MAX_SLOTS).ok(), Some(1000));
    }

    #[test]
    fn slots_are_named_as_the_server_names_them() {
        assert_eq!(
            slot_names("exports", 3),
            ["exports#1", "exports#2", "exports#3"]
        );
    }
}
