//! One task per client renews every lock the client holds: one
//! `pglock_heartbeat_many` call per period for all of them, not a heartbeat per
//! lock.
//!
//! A lock is registered when acquired and leaves the registry when it is
//! released, dropped or lost. The task runs while the registry holds a lock: the
//! first lock starts it and it ends once the last one is gone, so a client that
//! holds nothing runs no task, and none outlives a client and its locks.
//!
//! Each lock keeps its own schedule and deadline by the rule of [`Timing`]. A
//! call goes out when the earliest lock is due and takes along every lock due
//! within the next half period: renewed early, never late. Locks taken at
//! different times so fall into step within a period or two. One call renews at
//! most [`MAX_HEARTBEAT_MANY`] locks (the server's limit); more are renewed by
//! the calls that follow at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pglock_protocol::limits::MAX_HEARTBEAT_MANY;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::LostReason;
use crate::heartbeat::Timing;
use crate::held::Held;
use crate::sql::Renewal;

/// A client's renewer: the locks it holds and the task that renews them.
#[derive(Debug)]
pub(crate) struct Renewer {
    connection: Arc<Connection>,
    owner: String,
    lease: Duration,
    timing: Timing,
    registry: Mutex<Registry>,
    /// Wakes the task when a lock comes or goes.
    wake: Notify,
}

/// The locks being renewed, by the key their [`Lock`](crate::Lock) keeps.
#[derive(Debug, Default)]
struct Registry {
    locks: HashMap<u64, Entry>,
    next_key: u64,
    /// The task, while it runs.
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Entry {
    held: Arc<Held>,
    /// When the request of the last successful acquire or renewal was sent.
    renewed: Instant,
    /// When to send the next renewal.
    next: Instant,
    /// The error of the last attempt, if it failed.
    last_error: Option<String>,
}

/// A lock in a call: its key, and the RVN the call presents for it.
#[derive(Debug)]
struct Member {
    key: u64,
    held: Arc<Held>,
    rvn: i64,
    lost_at: Instant,
}

/// The locks of one call, each already marked as in it.
#[derive(Debug)]
struct Batch {
    members: Vec<Member>,
    /// Fires the members' call-in-flight token when the batch is done with,
    /// however that happens.
    over: DropGuard,
}

/// What the task does next.
#[derive(Debug)]
enum Plan {
    Renew(Batch),
    Sleep(Instant),
    /// Nothing is held: the task ends.
    Idle,
}

impl Registry {
    fn insert(&mut self, held: Arc<Held>, renewed: Instant, timing: &Timing) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        let entry = Entry {
            held,
            renewed,
            next: renewed + timing.period(),
            last_error: None,
        };
        self.locks.insert(key, entry);
        key
    }

    /// Declares lost every lock whose deadline has come without a renewal.
    fn expire(&mut self, now: Instant, timing: &Timing) {
        self.locks.retain(|_, entry| {
            if now < timing.lost_at(entry.renewed) {
                return true;
            }
            let last_error = entry.last_error.take();
            entry
                .held
                .mark_lost(LostReason::HeartbeatsFailed { last_error });
            false
        });
    }

    /// The earliest deadline of the locks held.
    fn next_deadline(&self, timing: &Timing) -> Option<Instant> {
        self.locks
            .values()
            .map(|entry| timing.lost_at(entry.renewed))
            .min()
    }

    /// What to do at `now`: renew the locks due (and those due soon), or sleep
    /// until the next is due or the next deadline comes.
    ///
    /// The locks chosen are marked as in a call before the registry's mutex is
    /// let go: a [`Renewer::stop`] that finds one still registered runs before
    /// this, and one that finds it gone sees the call and waits for its RVN.
    fn plan(&mut self, now: Instant, timing: &Timing) -> Plan {
        self.expire(now, timing);
        let Some(deadline) = self.next_deadline(timing) else {
            return Plan::Idle;
        };
        // An attempt due at or after its lock's deadline is never made: the lock
        // is lost at the deadline.
        let worth_sending = |entry: &Entry| entry.next < timing.lost_at(entry.renewed);
        let earliest = self
            .locks
            .values()
            .filter(|entry| worth_sending(entry))
            .map(|entry| entry.next)
            .min();
        match earliest {
            Some(earliest) if earliest <= now => {}
            Some(earliest) => return Plan::Sleep(earliest.min(deadline)),
            None => return Plan::Sleep(deadline),
        }
        let horizon = now + timing.early();
        let mut due: Vec<(u64, &Entry)> = self
            .locks
            .iter()
            .filter(|(_, entry)| worth_sending(entry) && entry.next <= horizon)
            .map(|(key, entry)| (*key, entry))
            .collect();
        due.sort_by_key(|(key, entry)| (entry.next, *key));
        // pglock refuses a name twice in one call (22023), which would fail the
        // call for every lock in it: a second lock of one name (this client's
        // lock lost and taken again) waits for the next call.
        let mut names = HashSet::new();
        let call_over = CancellationToken::new();
        let members = due
            .into_iter()
            .filter(|(_, entry)| names.insert(entry.held.name()))
            .take(MAX_HEARTBEAT_MANY)
            .map(|(key, entry)| {
                entry.held.set_call_in_flight(Some(call_over.clone()));
                Member {
                    key,
                    held: Arc::clone(&entry.held),
                    rvn: entry.held.rvn(),
                    lost_at: timing.lost_at(entry.renewed),
                }
            })
            .collect();
        Plan::Renew(Batch {
            members,
            over: call_over.drop_guard(),
        })
    }

    /// Records the outcome of a call sent at `sent` for `members`, as of `now`:
    /// the new RVNs, or a retry after `timing.retry()` for each lock if the call
    /// failed. The locks the server says this client does not hold leave the
    /// registry and are lost at once ([`LostReason::NotHeld`]): a rival may
    /// hold them already. Returns them, for the lookup that tells whether
    /// another role holds them.
    fn settle(
        &mut self,
        members: &[Member],
        sent: Instant,
        outcome: Result<Vec<Renewal>, String>,
        now: Instant,
        timing: &Timing,
    ) -> Vec<usize> {
        let rows = match outcome {
            Ok(rows) => rows,
            Err(error) => {
                for member in members {
                    self.retry(member.key, now, timing, &error);
                }
                return Vec::new();
            }
        };
        let mut refused = Vec::new();
        for (index, member) in members.iter().enumerate() {
            let row = rows.get(index).filter(|row| row.name == member.held.name());
            match row {
                Some(Renewal {
                    renewed: true,
                    rvn: Some(rvn),
                    ..
                }) => {
                    // A lock declared lost meanwhile keeps the RVN it had: its
                    // release then fails, as the loss said it would.
                    if !member.held.is_lost() {
                        member.held.set_rvn(*rvn);
                    }
                    if let Some(entry) = self.locks.get_mut(&member.key) {
                        entry.renewed = sent;
                        entry.next = sent + timing.period();
                        entry.last_error = None;
                    }
                }
                Some(Renewal { renewed: false, .. }) => {
                    self.locks.remove(&member.key);
                    member.held.mark_lost(LostReason::NotHeld);
                    refused.push(index);
                }
                _ => {
                    let error = "pglock_heartbeat_many returned no row for this lock";
                    self.retry(member.key, now, timing, error);
                }
            }
        }
        refused
    }

    fn retry(&mut self, key: u64, now: Instant, timing: &Timing, error: &str) {
        if let Some(entry) = self.locks.get_mut(&key) {
            entry.next = now + timing.retry();
            entry.last_error = Some(error.to_owned());
        }
    }
}

impl Renewer {
    /// The renewer of a client with `config`, calling over `connection`.
    pub fn new(connection: Arc<Connection>, config: &ClientConfig) -> Self {
        Self {
            connection,
            owner: config.owner().to_owned(),
            lease: config.lease(),
            timing: Timing::new(config),
            registry: Mutex::new(Registry::default()),
            wake: Notify::new(),
        }
    }

    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// Starts renewing `held`, acquired by a request sent at `renewed`, and
    /// starts the task if it is not running. Returns the lock's key.
    pub fn register(self: &Arc<Self>, held: Arc<Held>, renewed: Instant) -> u64 {
        let mut registry = self.registry();
        let key = registry.insert(held, renewed, &self.timing);
        let running = registry
            .task
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if running {
            self.wake.notify_one();
        } else {
            registry.task = Some(tokio::spawn(Arc::clone(self).run()));
        }
        key
    }

    /// Stops renewing the lock `key`: no call made from now on includes it.
    pub fn remove(&self, key: u64) {
        if self.registry().locks.remove(&key).is_some() {
            self.wake.notify_one();
        }
    }

    /// Stops renewing the lock `key` (`held`), and waits for a call in flight
    /// that includes it, so that `held` has the lock's latest RVN.
    pub async fn stop(&self, key: u64, held: &Held) {
        self.remove(key);
        if let Some(call) = held.call_in_flight() {
            call.cancelled().await;
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn run(self: Arc<Self>) {
        let mut stopped = Stopped {
            renewer: &self,
            idle: false,
        };
        loop {
            let plan = {
                let mut registry = self.registry();
                let plan = registry.plan(Instant::now(), &self.timing);
                if let Plan::Idle = plan {
                    registry.task = None;
                    stopped.idle = true;
                    return;
                }
                plan
            };
            match plan {
                Plan::Renew(batch) => self.renew(batch).await,
                Plan::Sleep(until) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = sleep_until(until) => {}
                    }
                }
                Plan::Idle => return,
            }
        }
    }

    /// One `pglock_heartbeat_many` call for the batch's members.
    async fn renew(&self, batch: Batch) {
        // The guard fires once the call and what follows from it are over,
        // however it ends.
        let Batch {
            members,
            over: _call_over,
        } = batch;
        let sent = Instant::now();
        let last_deadline = members.iter().map(|member| member.lost_at).max();
        let limit = self
            .timing
            .give_up_at(sent, last_deadline.unwrap_or(sent))
            .saturating_duration_since(sent);
        let names: Vec<&str> = members.iter().map(|member| member.held.name()).collect();
        let rvns: Vec<i64> = members.iter().map(|member| member.rvn).collect();
        let (owner, lease) = (self.owner.as_str(), self.lease);
        let call = self
            .connection
            .call(Some(limit), "pglock_heartbeat_many", |sql| async move {
                sql.heartbeat_many(owner, &names, &rvns, lease).await
            });
        tokio::pin!(call);
        // Deadlines keep their time while the call is out: a lock whose
        // deadline comes first is lost then, whatever the call brings later.
        let outcome = loop {
            let deadline = self.registry().next_deadline(&self.timing);
            tokio::select! {
                biased;
                outcome = &mut call => break outcome,
                _ = sleep_until(deadline.unwrap_or(sent)), if deadline.is_some() => {
                    self.registry().expire(Instant::now(), &self.timing);
                }
            }
        };
        // Every failure of the call as a whole is retried, 55000 and 42501
        // included: they say nothing about one lock (pglock_heartbeat_many
        // reports a lock not held in its row instead), so each lock goes on
        // until it is renewed or its deadline comes.
        let outcome = outcome.map_err(|failure| failure.describe());
        let refused = self
            .registry()
            .settle(&members, sent, outcome, Instant::now(), &self.timing);
        // Already lost: the lookup only tells why, and a task stopped during
        // it leaves them lost as not held.
        let asking_until = Instant::now() + self.timing.retry();
        for index in refused {
            let member = &members[index];
            if self.why_not_held(member, asking_until).await == LostReason::HeldByOtherRole {
                member.held.lost_to_other_role();
            }
        }
        for member in &members {
            member.held.set_call_in_flight(None);
        }
    }

    /// Why the server did not renew `member`: its row still shows our owner
    /// and RVN only if another role holds it (where `pglock_heartbeat` would
    /// raise 42501); anything else (taken over, released, gone, or no answer
    /// by `until`) reads as not held.
    async fn why_not_held(&self, member: &Member, until: Instant) -> LostReason {
        let limit = until.saturating_duration_since(Instant::now());
        if limit.is_zero() {
            return LostReason::NotHeld;
        }
        let name = member.held.name();
        let info = self
            .connection
            .call(Some(limit), "pglock_get", |sql| async move {
                sql.get(name).await
            })
            .await;
        match info {
            Ok(Some(info))
                if info.owner == member.held.owner()
                    && info.rvn == member.rvn
                    && !info.released =>
            {
                LostReason::HeldByOtherRole
            }
            _ => LostReason::NotHeld,
        }
    }
}

/// Ends the task's watch over its locks: if it stops with locks still held
/// (its runtime shut down, or a panic), nothing renews them any more, so they
/// are lost at once rather than silently.
struct Stopped<'a> {
    renewer: &'a Renewer,
    /// The task stopped because nothing was held.
    idle: bool,
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if self.idle {
            return;
        }
        let mut registry = self.renewer.registry();
        for (_, entry) in registry.locks.drain() {
            entry.held.mark_lost(LostReason::HeartbeatsFailed {
                last_error: Some("the client's renewer stopped".to_owned()),
            });
        }
        registry.task = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::tests::timing;

    fn held(name: &str, rvn: i64) -> Arc<Held> {
        Arc::new(Held::new(name.to_owned(), "worker".to_owned(), rvn))
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn names(plan: &Plan) -> Vec<&str> {
        match plan {
            Plan::Renew(batch) => batch
                .members
                .iter()
                .map(|member| member.held.name())
                .collect(),
            other => panic!("expected a call, got {other:?}"),
        }
    }

    /// A row of `pglock_heartbeat_many`: renewed at `rvn`, or not held (`None`).
    fn row(name: &str, rvn: Option<i64>) -> Renewal {
        Renewal {
            name: name.to_owned(),
            rvn,
            renewed: rvn.is_some(),
        }
    }

    fn renewed(members: &[&str], rvn: i64) -> Vec<Renewal> {
        members.iter().map(|name| row(name, Some(rvn))).collect()
    }

    #[test]
    fn a_lock_is_renewed_one_period_after_its_acquire_was_sent() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        registry.insert(held("a", 1), start, &t);
        assert!(matches!(
            registry.plan(start + ms(999), &t),
            Plan::Sleep(at) if at == start + ms(1_000)
        ));
        assert_eq!(names(&registry.plan(start + ms(1_000), &t)), ["a"]);
    }

    #[test]
    fn locks_due_within_half_a_period_share_a_call_and_later_ones_wait() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        registry.insert(held("a", 1), start, &t);
        registry.insert(held("b", 2), start + ms(500), &t);
        registry.insert(held("c", 3), start + ms(501), &t);
        let plan = registry.plan(start + ms(1_000), &t);
        assert_eq!(names(&plan), ["a", "b"], "c is due after the horizon");
        // Once renewed together, a and b stay in step; c keeps its own time,
        // then joins them early.
        let Plan::Renew(Batch { members, .. }) = plan else {
            unreachable!()
        };
        let sent = start + ms(1_000);
        let refused = registry.settle(&members, sent, Ok(renewed(&["a", "b"], 9)), sent, &t);
        assert!(refused.is_empty());
        assert!(matches!(
            registry.plan(sent, &t),
            Plan::Sleep(at) if at == start + ms(1_501)
        ));
        assert_eq!(
            names(&registry.plan(start + ms(1_501), &t)),
            ["c", "a", "b"]
        );
    }

    #[test]
    fn a_call_renews_at_most_the_servers_limit_and_the_rest_follow() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        for index in 0..=MAX_HEARTBEAT_MANY {
            registry.insert(held(&format!("lock-{index}"), 1), start, &t);
        }
        let due = start + ms(1_000);
        let Plan::Renew(Batch { members: first, .. }) = registry.plan(due, &t) else {
            panic!("a call is due")
        };
        assert_eq!(first.len(), MAX_HEARTBEAT_MANY);
        let rows: Vec<Renewal> = first
            .iter()
            .map(|member| row(member.held.name(), Some(2)))
            .collect();
        registry.settle(&first, due, Ok(rows), due, &t);
        assert_eq!(
            names(&registry.plan(due, &t)),
            [format!("lock-{MAX_HEARTBEAT_MANY}")]
        );
    }

    #[test]
    fn a_failed_call_is_retried_and_a_lock_not_held_leaves() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        let (a, b) = (held("a", 1), held("b", 2));
        registry.insert(Arc::clone(&a), start, &t);
        registry.insert(Arc::clone(&b), start, &t);
        let due = start + ms(1_000);
        let Plan::Renew(Batch { members, .. }) = registry.plan(due, &t) else {
            panic!("a call is due")
        };
        let failed = Err("connection closed".to_owned());
        assert!(registry.settle(&members, due, failed, due, &t).is_empty());
        let retry_at = due + t.retry();
        assert!(matches!(registry.plan(due, &t), Plan::Sleep(at) if at == retry_at));
        let Plan::Renew(Batch { members, .. }) = registry.plan(retry_at, &t) else {
            panic!("a retry is due")
        };
        let rows = vec![row("a", None), row("b", Some(5))];
        let refused = registry.settle(&members, retry_at, Ok(rows), retry_at, &t);
        assert_eq!(refused, [0]);
        assert_eq!((a.rvn(), b.rvn()), (1, 5));
        assert_eq!(registry.locks.len(), 1);
    }

    /// The signal of a lock the server did not renew fires with the reply,
    /// before the lookup that may narrow its reason: a rival may hold it
    /// already, and a task stopped during the lookup must not leave it unlost.
    #[test]
    fn a_lock_not_renewed_is_lost_as_the_reply_is_settled() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        let (a, b) = (held("a", 1), held("b", 2));
        registry.insert(Arc::clone(&a), start, &t);
        registry.insert(Arc::clone(&b), start, &t);
        let due = start + ms(1_000);
        let Plan::Renew(Batch { members, .. }) = registry.plan(due, &t) else {
            panic!("a call is due")
        };
        let rows = vec![row("a", Some(3)), row("b", None)];
        registry.settle(&members, due, Ok(rows), due, &t);
        assert!(!a.is_lost());
        assert!(b.is_lost(), "lost with the reply, before any lookup");
        assert_eq!(b.reason(), Some(LostReason::NotHeld));
    }

    #[test]
    fn a_lock_is_lost_at_its_deadline_and_no_attempt_comes_after_it() {
        let t = timing(1_000, 400);
        let start = Instant::now();
        let mut registry = Registry::default();
        let a = held("a", 1);
        registry.insert(Arc::clone(&a), start, &t);
        let deadline = t.lost_at(start);
        // A retry that would leave at or after the deadline is not made.
        registry.retry(0, deadline - t.retry(), &t, "timeout");
        assert!(matches!(
            registry.plan(deadline - ms(1), &t),
            Plan::Sleep(at) if at == deadline
        ));
        assert!(matches!(registry.plan(deadline, &t), Plan::Idle));
        assert_eq!(
            a.reason(),
            Some(LostReason::HeartbeatsFailed {
                last_error: Some("timeout".to_owned())
            })
        );
    }

    /// A lock chosen for a call shows the call before the registry is let go,
    /// so that a release never misses it, and the call shows over once the
    /// batch is done with.
    #[test]
    fn the_locks_of_a_call_show_it_in_flight_as_soon_as_they_are_chosen() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        let (a, b) = (held("a", 1), held("b", 2));
        registry.insert(Arc::clone(&a), start, &t);
        registry.insert(Arc::clone(&b), start + ms(5_000), &t);
        let plan = registry.plan(start + ms(1_000), &t);
        assert_eq!(names(&plan), ["a"]);
        let call = a.call_in_flight().expect("a is in a call once chosen");
        assert!(!call.is_cancelled());
        assert!(b.call_in_flight().is_none(), "b is not due");
        drop(plan);
        assert!(call.is_cancelled(), "the call is over with its batch");
    }

    #[test]
    fn a_name_held_twice_waits_for_the_next_call() {
        let t = timing(10_000, 1_000);
        let start = Instant::now();
        let mut registry = Registry::default();
        registry.insert(held("a", 1), start, &t);
        registry.insert(held("a", 7), start, &t);
        let plan = registry.plan(start + ms(1_000), &t);
        assert_eq!(names(&plan), ["a"]);
    }
}
