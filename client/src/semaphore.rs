//! Semaphores: one of at most `slots` holders of a name, at once
//! ([`Client::try_acquire_slot`]) or waiting ([`Client::acquire_slot`]).
//!
//! A slot is an ordinary lock named by the protocol's [`slot_name`], so the
//! [`Lock`] that holds it is renewed, lost and released like any other. The
//! server could wait for a slot itself (`wait_timeout` > 0), but that would hold
//! the client's one connection and keep its renewals waiting: the client asks
//! with `wait_timeout => '0'` and waits between calls instead, watching each
//! slot's holder by the same rule as [`Client::acquire`].

use pglock_protocol::semaphore::slot_name;
use tokio::time::{sleep_until, Instant};

use crate::acquire::Attempt;
use crate::client::Client;
use crate::config::{ConfigError, MAX_SLOTS};
use crate::connection::Failure;
use crate::error::Error;
use crate::lock::Lock;
use crate::options::AcquireOptions;
use crate::sql::SlotRow;

impl Client {
    /// A slot of semaphore `name` of `slots` slots, without waiting; see
    /// [`Client::try_acquire_slot_with`].
    pub async fn try_acquire_slot(&self, name: &str, slots: u32) -> Result<Option<Lock>, Error> {
        self.try_acquire_slot_with(name, slots, &AcquireOptions::default())
            .await
    }

    /// One try at a slot of semaphore `name`, which has `slots` slots (1 to
    /// [`MAX_SLOTS`]): the [`Lock`] of the slot taken, named `name#k`, or `None`
    /// if every slot is held.
    ///
    /// A free slot is taken at once (`pglock_acquire_slot`, lowest first). When
    /// none is, the client looks at each slot in turn as [`Client::try_acquire`]
    /// does: it remembers each holder's RVN, and a later try that finds one
    /// standing still for its holder's whole lease takes that slot over. Calling
    /// `try_acquire_slot` now and then is enough to get the slot of a holder that
    /// died. A try that finds every slot held costs one call, plus one per slot.
    ///
    /// The slot stores `options`' data, or none: slots are interchangeable, so a
    /// slot never passes its previous holder's data on. `wait_at_most` is ignored.
    pub async fn try_acquire_slot_with(
        &self,
        name: &str,
        slots: u32,
        options: &AcquireOptions,
    ) -> Result<Option<Lock>, Error> {
        let count = slot_count(slots)?;
        let names = slot_names(name, slots);
        self.try_slots(name, count, &names, options).await
    }

    /// A slot of semaphore `name` of `slots` slots, waiting as long as it takes;
    /// see [`Client::acquire_slot_with`].
    pub async fn acquire_slot(&self, name: &str, slots: u32) -> Result<Lock, Error> {
        self.acquire_slot_with(name, slots, &AcquireOptions::default())
            .await
    }

    /// A slot of semaphore `name`, which has `slots` slots (1 to [`MAX_SLOTS`]),
    /// waiting while all are held: the [`Lock`] of the slot taken, named `name#k`.
    ///
    /// Each try is [`Client::try_acquire_slot_with`]'s. Between tries the client
    /// waits a poll interval, or less if a slot's holder's RVN will by then have
    /// stood still for its lease: a released slot is taken at the next poll, a
    /// dead holder's slot once its lease has run out since the client first saw
    /// its RVN, never before. With [`AcquireOptions::wait_at_most`] it gives up
    /// with [`Error::Timeout`] after the last try at the limit.
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
        let names = slot_names(name, slots);
        let deadline = options
            .wait_at_most
            .map(|limit| (Instant::now() + limit, limit));
        loop {
            if let Some(lock) = self.try_slots(name, count, &names, options).await? {
                return Ok(lock);
            }
            let now = Instant::now();
            if let Some((deadline, limit)) = deadline {
                if now >= deadline {
                    return Err(Error::Timeout {
                        operation: "acquire_slot",
                        after: limit,
                    });
                }
            }
            let poll = self.config().poll_interval();
            let until = deadline.map(|(deadline, _)| deadline);
            let wake = {
                let seen = self.seen();
                names
                    .iter()
                    .map(|slot| seen.next_attempt(slot, now, poll, until))
                    .min()
            };
            sleep_until(wake.unwrap_or(now + poll)).await;
        }
    }

    /// One try: a free slot in one call, else each slot by the waiting rule.
    async fn try_slots(
        &self,
        name: &str,
        count: i32,
        names: &[String],
        options: &AcquireOptions,
    ) -> Result<Option<Lock>, Error> {
        let config = self.config();
        let (owner, lease, data) = (config.owner(), config.lease(), options.data.as_deref());
        let sent = Instant::now();
        let row = self
            .connection()
            .call(
                config.call_timeout(),
                "pglock_acquire_slot",
                |sql| async move { sql.acquire_slot(name, owner, count, lease, data).await },
            )
            .await
            .map_err(Failure::into_error)?;
        if let SlotRow {
            acquired: true,
            slot_name: Some(slot),
            rvn: Some(rvn),
        } = row
        {
            self.seen().forget(&slot);
            return Ok(Some(self.hold(&slot, rvn, options.data.clone(), sent)));
        }
        // Every slot held: watch each holder's RVN, and take a slot over once its
        // RVN has stood still for its holder's lease (or take one freed meanwhile).
        // Data as pglock_acquire_slot stores it: as given, none included.
        let per_slot = AcquireOptions {
            data: options.data.clone(),
            replace_data: true,
            wait_at_most: None,
        };
        for slot in names {
            if let Attempt::Acquired(lock) = self.try_acquire_with(slot, &per_slot).await? {
                return Ok(Some(lock));
            }
        }
        Ok(None)
    }
}

/// `slots` as the server's `integer`, if within the server's limits.
fn slot_count(slots: u32) -> Result<i32, Error> {
    match i32::try_from(slots) {
        Ok(count) if (1..=MAX_SLOTS).contains(&slots) => Ok(count),
        _ => Err(Error::Config(ConfigError::SlotsOutOfRange(slots))),
    }
}

fn slot_names(name: &str, slots: u32) -> Vec<String> {
    (1..=slots).map(|slot| slot_name(name, slot)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts_outside_the_servers_limits_are_refused() {
        for slots in [0, MAX_SLOTS + 1, u32::MAX] {
            assert!(
                matches!(
                    slot_count(slots),
                    Err(Error::Config(ConfigError::SlotsOutOfRange(refused))) if refused == slots
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
