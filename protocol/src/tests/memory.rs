//! An in-memory store and simulated clock for the protocol's tests: one caller's
//! transaction, with other sessions' committed writes injected where a test
//! wants them (right after a read, or at a time on the clock).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use crate::lock::{Claim, DataChange, Heir, Holder, Lease, Lock, Released, RoleId};
use crate::store::{Fencing, Fields, Queue, Store};
use crate::waiting::Clock;

type Interference = Box<dyn FnOnce(&mut World)>;

pub struct World {
    pub locks: BTreeMap<String, Lock>,
    pub last_rvn: i64,
    pub caller: RoleId,
    /// The name locks the caller's transaction holds, with their counts.
    pub name_locks: BTreeMap<String, usize>,
    /// The shared name locks (fences) the caller's transaction holds, with counts.
    pub shared_name_locks: BTreeMap<String, usize>,
    /// Rows the caller's transaction has share-locked (fenced).
    pub row_shares: BTreeSet<String>,
    /// Writes by other sessions, each committed right before one of our name
    /// locks was granted (waited for or not).
    pub after_name_locks: VecDeque<Interference>,
    /// Rows another open transaction is writing after giving the name back (a
    /// bulk write): a caller that waits for the row runs its end (a commit or a
    /// rollback) first.
    pub open_row_writes: BTreeMap<String, Interference>,
    /// Writes by other sessions, each committed right after one of our reads.
    pub after_reads: VecDeque<Interference>,
    /// Writes by other sessions, committed when the clock reaches their time.
    pub scheduled: Vec<(Duration, Interference)>,
    /// When set, reads show this older state: a transaction snapshot that cannot
    /// see later commits (REPEATABLE READ), while writes meet the real table.
    pub snapshot: Option<BTreeMap<String, Lock>>,
    /// Names whose lock another open transaction holds (it wrote them).
    pub busy: BTreeSet<String>,
    /// Names the caller queued for: a `lock_name` of a busy name, which waits
    /// behind that transaction (and makes later requests wait behind it).
    pub queued_for_names: Vec<String>,
    /// Locks whose row another open transaction has locked, without holding the
    /// name's lock any more (a bulk release).
    pub rows_locked: BTreeSet<String>,
    /// The monotonic clock the caller and the server share.
    pub now: Duration,
    /// Whether the server watches locks (pglock preloaded); what it saw: each
    /// lock's RVN at its last write and when that was; and since when it has
    /// been watching (every lock it has no record of was written before).
    pub server_watches: bool,
    pub observed: BTreeMap<String, (i64, Duration)>,
    pub watching_since: Duration,
    /// Until when someone waits ahead of the caller in each queue of the server.
    pub queued: BTreeMap<QueueKey, Duration>,
    pub queue_checks: usize,
    /// The first waiter of each lock, whom a release may hand it to; the
    /// hand-overs made, as (ticket, RVN); and the lock handed to the caller.
    pub heirs: BTreeMap<String, Heir>,
    pub handed: Vec<(u64, i64)>,
    pub handed_to_caller: BTreeMap<String, i64>,
    pub reads: usize,
    /// Reads that fetched the data column.
    pub data_reads: usize,
    pub sleeps: usize,
}

/// A queue of the server, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueKey {
    Lock(String),
    Slots(String),
}

impl QueueKey {
    pub fn of(queue: Queue<'_>) -> QueueKey {
        match queue {
            Queue::Lock(name) => QueueKey::Lock(name.to_owned()),
            Queue::Slots(name) => QueueKey::Slots(name.to_owned()),
        }
    }
}

pub const CALLER: RoleId = RoleId(10);
pub const OTHER_ROLE: RoleId = RoleId(20);

pub fn lease_secs(secs: u64) -> Lease {
    Lease::from_duration(Duration::from_secs(secs))
}

/// A moment on the caller's clock, `millis` after the test began.
pub fn at(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// How often a wait polls the lock of a lease of a second or more.
const ONE_POLL: Duration = Duration::from_millis(100);

impl World {
    pub fn new() -> World {
        World {
            locks: BTreeMap::new(),
            last_rvn: 0,
            caller: CALLER,
            name_locks: BTreeMap::new(),
            shared_name_locks: BTreeMap::new(),
            row_shares: BTreeSet::new(),
            after_name_locks: VecDeque::new(),
            open_row_writes: BTreeMap::new(),
            after_reads: VecDeque::new(),
            scheduled: Vec::new(),
            snapshot: None,
            busy: BTreeSet::new(),
            queued_for_names: Vec::new(),
            rows_locked: BTreeSet::new(),
            now: Duration::ZERO,
            server_watches: true,
            observed: BTreeMap::new(),
            watching_since: Duration::ZERO,
            queued: BTreeMap::new(),
            queue_checks: 0,
            heirs: BTreeMap::new(),
            handed: Vec::new(),
            handed_to_caller: BTreeMap::new(),
            reads: 0,
            data_reads: 0,
            sleeps: 0,
        }
    }

    /// Move the clock on by `elapsed`.
    pub fn advance(&mut self, elapsed: Duration) {
        self.now += elapsed;
    }

    /// A new RVN for a write of `name`, which the server sees happen now.
    pub fn next_rvn_of(&mut self, name: &str) -> i64 {
        self.last_rvn += 1;
        self.observed
            .insert(name.to_owned(), (self.last_rvn, self.now));
        self.last_rvn
    }

    /// Someone waits ahead of the caller in `queue` until `until`.
    pub fn queue_ahead_until(&mut self, queue: Queue<'_>, until: Duration) {
        self.queued.insert(QueueKey::of(queue), until);
    }

    /// The server restarts: it forgets what it saw and starts watching anew.
    pub fn server_restarts(&mut self) {
        self.observed.clear();
        self.watching_since = self.now;
    }

    /// Another session's committed lock: `owner` of `role` holds `name`.
    pub fn put(&mut self, name: &str, owner: &str, role: RoleId, lease: Lease) -> i64 {
        let claim = Claim {
            name,
            owner,
            lease: &lease,
            role,
        };
        let rvn = self.next_rvn_of(name);
        self.locks
            .insert(name.to_owned(), self.claimed_lock(&claim, rvn, None));
        rvn
    }

    /// The lock `claim` holds once written now at `rvn`.
    fn claimed_lock(&self, claim: &Claim<'_>, rvn: i64, data: Option<Vec<u8>>) -> Lock {
        Lock {
            owner: claim.owner.to_owned(),
            rvn,
            lease: *claim.lease,
            data,
            released: false,
            holder_role: claim.role,
        }
    }

    /// Another session's heartbeat of `name`: a new RVN.
    pub fn bump(&mut self, name: &str) -> i64 {
        let rvn = self.next_rvn_of(name);
        if let Some(lock) = self.locks.get_mut(name) {
            lock.rvn = rvn;
        }
        rvn
    }

    pub fn is_name_locked(&self, name: &str) -> bool {
        self.name_locks.get(name).is_some_and(|count| *count > 0)
    }

    pub fn is_name_shared(&self, name: &str) -> bool {
        self.shared_name_locks
            .get(name)
            .is_some_and(|count| *count > 0)
    }

    /// Whether the caller's transaction holds any lock at all: a name lock of
    /// either kind, or a row lock.
    pub fn holds_anything(&self) -> bool {
        self.name_locks.values().any(|count| *count > 0)
            || self.shared_name_locks.values().any(|count| *count > 0)
            || !self.row_shares.is_empty()
    }

    /// The caller's clock stands at `event` or at most one poll after it: a
    /// wait noticed `event` at its next poll, not before and not later.
    #[track_caller]
    pub fn assert_noticed_within_a_poll(&self, event: Duration) {
        assert!(
            self.now >= event && self.now <= event + ONE_POLL,
            "now {:?}, not within one poll after {event:?}",
            self.now
        );
    }

    /// Whether writes came in the store's name-lock key order: `written` is each
    /// name with the RVN its write drew, which records when the write happened.
    pub fn written_in_key_order<'a>(
        &mut self,
        written: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> bool {
        let mut by_rvn: Vec<(i64, &str)> =
            written.into_iter().map(|(name, rvn)| (rvn, name)).collect();
        by_rvn.sort();
        let keys: Vec<u64> = by_rvn
            .iter()
            .map(|(_, name)| self.name_lock_key(name))
            .collect();
        keys.windows(2).all(|pair| pair[0] <= pair[1])
    }

    fn name_lock_granted(&mut self) {
        if let Some(interfere) = self.after_name_locks.pop_front() {
            interfere(self);
        }
    }

    fn held_exactly(&self, holder: &Holder<'_>) -> bool {
        self.locks
            .get(holder.name)
            .is_some_and(|lock| holder.is(lock.recorded()))
    }

    fn store_data(current: Option<Vec<u8>>, change: DataChange<'_>) -> Option<Vec<u8>> {
        match change {
            DataChange::Keep => current,
            DataChange::Replace(data) => data.map(<[u8]>::to_vec),
        }
    }
}

impl Store for World {
    fn caller(&mut self) -> RoleId {
        self.caller
    }

    fn stood_still(&mut self, name: &str, rvn: i64) -> Option<Duration> {
        if !self.server_watches {
            return None;
        }
        // As the server's table says it: since the write it saw of this RVN, or,
        // for any other RVN, no earlier than its last write of the name or than
        // when it began to watch.
        let since = match self.observed.get(name) {
            Some((seen, since)) if *seen == rvn => *since,
            Some((_, since)) => (*since).max(self.watching_since),
            None => self.watching_since,
        };
        Some(self.now.saturating_sub(since))
    }

    fn queued_ahead(&mut self, queue: Queue<'_>) -> bool {
        self.queue_checks += 1;
        self.queued
            .get(&QueueKey::of(queue))
            .is_some_and(|until| self.now < *until)
    }

    fn read(&mut self, name: &str, fields: Fields) -> Option<Lock> {
        self.reads += 1;
        let mut seen = match &self.snapshot {
            Some(snapshot) => snapshot.get(name).cloned(),
            None => self.locks.get(name).cloned(),
        };
        match fields {
            Fields::WithData => self.data_reads += 1,
            Fields::WithoutData => {
                if let Some(lock) = &mut seen {
                    lock.data = None;
                }
            }
        }
        if let Some(interfere) = self.after_reads.pop_front() {
            interfere(self);
        }
        seen
    }

    fn insert(&mut self, claim: &Claim<'_>, data: Option<&[u8]>) -> Option<i64> {
        if self.locks.contains_key(claim.name) {
            return None;
        }
        let rvn = self.next_rvn_of(claim.name);
        let lock = self.claimed_lock(claim, rvn, data.map(<[u8]>::to_vec));
        self.locks.insert(claim.name.to_owned(), lock);
        Some(rvn)
    }

    fn take_over(
        &mut self,
        claim: &Claim<'_>,
        expected_rvn: i64,
        data: DataChange<'_>,
        wait_for_row: bool,
    ) -> Option<(i64, Option<Vec<u8>>)> {
        // Waiting is not simulated: a test that locks a row uses the caller that
        // must not wait.
        if !wait_for_row && self.rows_locked.contains(claim.name) {
            return None;
        }
        let current = self.locks.get(claim.name)?;
        if current.rvn != expected_rvn {
            return None;
        }
        let data = World::store_data(current.data.clone(), data);
        let rvn = self.next_rvn_of(claim.name);
        let lock = self.claimed_lock(claim, rvn, data.clone());
        self.locks.insert(claim.name.to_owned(), lock);
        Some((rvn, data))
    }

    fn heartbeat(
        &mut self,
        holder: &Holder<'_>,
        data: DataChange<'_>,
        lease: Option<&Lease>,
    ) -> Option<i64> {
        if !self.held_exactly(holder) {
            return None;
        }
        let rvn = self.next_rvn_of(holder.name);
        let lock = self.locks.get_mut(holder.name)?;
        lock.rvn = rvn;
        lock.data = World::store_data(lock.data.take(), data);
        if let Some(lease) = lease {
            lock.lease = *lease;
        }
        Some(rvn)
    }

    fn release(
        &mut self,
        holder: &Holder<'_>,
        keep: bool,
        data: Option<&[u8]>,
    ) -> Option<Released> {
        if !self.held_exactly(holder) {
            return None;
        }
        if !keep {
            self.locks.remove(holder.name);
            self.observed.insert(holder.name.to_owned(), (0, self.now));
            return Some(Released::Deleted);
        }
        let rvn = self.next_rvn_of(holder.name);
        let lock = self.locks.get_mut(holder.name)?;
        lock.released = true;
        lock.rvn = rvn;
        if let Some(data) = data {
            lock.data = Some(data.to_vec());
        }
        Some(Released::Kept { rvn })
    }

    fn heir(&mut self, name: &str) -> Option<Heir> {
        self.heirs.get(name).cloned()
    }

    fn hand_over(&mut self, holder: &Holder<'_>, heir: &Heir, data: DataChange<'_>) -> Option<i64> {
        if !self.held_exactly(holder) {
            return None;
        }
        let rvn = self.next_rvn_of(holder.name);
        let lock = self.locks.get_mut(holder.name)?;
        lock.owner = heir.owner.clone();
        lock.lease = heir.lease;
        lock.holder_role = heir.role;
        lock.released = false;
        lock.rvn = rvn;
        lock.data = World::store_data(lock.data.take(), data);
        Some(rvn)
    }

    fn handed_over(&mut self, _name: &str, heir: &Heir, rvn: i64) {
        self.heirs
            .retain(|_, waiting| waiting.ticket != heir.ticket);
        self.handed.push((heir.ticket, rvn));
    }

    fn handed_to_me(&mut self, name: &str) -> Option<i64> {
        self.handed_to_caller.get(name).copied()
    }

    fn force_delete(&mut self, name: &str) -> bool {
        self.observed.insert(name.to_owned(), (0, self.now));
        self.locks.remove(name).is_some()
    }

    fn advance_rvns_past(&mut self, rvn: i64) {
        let stored = self.locks.values().map(|lock| lock.rvn).max().unwrap_or(0);
        self.last_rvn = self.last_rvn.max(rvn).max(stored);
    }

    fn renumber(&mut self, name: &str, rvn: i64) -> i64 {
        let new_rvn = self.next_rvn_of(name);
        let lock = self
            .locks
            .get_mut(name)
            .expect("renumber a lock just written");
        assert_eq!(lock.rvn, rvn, "renumber the RVN just written");
        lock.rvn = new_rvn;
        new_rvn
    }

    fn held_by(&mut self, owner: &str, role: RoleId) -> Vec<(String, i64)> {
        // Reverse name order, so a test sees the protocol impose its own order.
        self.locks
            .iter()
            .rev()
            .filter(|(_, lock)| !lock.released && lock.owner == owner && lock.holder_role == role)
            .map(|(name, lock)| (name.clone(), lock.rvn))
            .collect()
    }

    fn lock_name(&mut self, name: &str) {
        if self.busy.contains(name) {
            self.queued_for_names.push(name.to_owned());
        }
        *self.name_locks.entry(name.to_owned()).or_default() += 1;
        self.name_lock_granted();
    }

    fn try_lock_name(&mut self, name: &str) -> bool {
        if self.busy.contains(name) {
            return false;
        }
        // Granted at once; a writer may still have committed just before.
        *self.name_locks.entry(name.to_owned()).or_default() += 1;
        self.name_lock_granted();
        true
    }

    fn unlock_name(&mut self, name: &str) {
        let count = self.name_locks.entry(name.to_owned()).or_default();
        assert!(*count > 0, "unlock_name({name}) without a lock_name");
        *count -= 1;
    }

    fn name_lock_key(&mut self, name: &str) -> u64 {
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        hasher.finish()
    }
}

impl Fencing for World {
    fn lock_name_shared(&mut self, name: &str) {
        *self.shared_name_locks.entry(name.to_owned()).or_default() += 1;
        self.name_lock_granted();
    }

    fn unlock_name_shared(&mut self, name: &str) {
        let count = self.shared_name_locks.entry(name.to_owned()).or_default();
        assert!(
            *count > 0,
            "unlock_name_shared({name}) without a lock_name_shared"
        );
        *count -= 1;
    }

    fn fence(&mut self, holder: &Holder<'_>) -> Option<i64> {
        // Wait for the open bulk write of the row: it ends first.
        if let Some(ends) = self.open_row_writes.remove(holder.name) {
            ends(self);
            self.rows_locked.remove(holder.name);
        }
        if !self.held_exactly(holder) {
            return None;
        }
        self.row_shares.insert(holder.name.to_owned());
        Some(holder.rvn)
    }
}

impl Clock for World {
    fn now(&mut self) -> Duration {
        self.now
    }

    fn sleep_until(&mut self, wake: Duration) {
        assert!(
            wake >= self.now,
            "sleep into the past: {wake:?} < {:?}",
            self.now
        );
        self.sleeps += 1;
        self.advance(wake - self.now);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|(at, _)| *at <= wake);
        self.scheduled = later;
        for (_, interfere) in due {
            interfere(self);
        }
    }
}
