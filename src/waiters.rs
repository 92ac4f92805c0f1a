//! The queues of waiters, in shared memory: who waits for which lock, in the
//! order they came, and who to wake when a lock changes.
//!
//! Each backend that waits takes a seat, one of as many as the server has
//! backends, and keeps it for its life: a backend waits for one thing at a
//! time, so the seats never run out and nothing a caller does grows them.  A
//! seat in a queue holds the queue (a lock, or a semaphore's slots, of a
//! database: its name's key) and a ticket, the number of its arrival.  The
//! waiter with the lowest ticket is first; only it attempts the lock, and a
//! plain acquire does not jump ahead of anyone queued.  A watch (`pglock_watch`)
//! sits in no queue: it is woken by every change of its lock and blocks nobody.
//!
//! Wake-ups come after the writer's transaction: every name lock a transaction
//! takes is noted, and when its top-level transaction ends (committed or not,
//! its locks released), the first waiter of each such lock and every watcher
//! of it have their latches set.  A waiter that leaves (done, `wait_timeout`,
//! cancel, an error, termination) wakes the one after it.  A wake-up missed or
//! spurious costs nothing: waiters also poll.  Between two steps of the
//! committing procedure, a waiter keeps its place for two seconds: its next
//! step resumes it, or the place lapses and the queue goes on without it.
//!
//! A waiter for one lock also leaves its claim in its seat (owner, lease, role,
//! data up to [`INLINE_DATA`] bytes): the holder's release then hands the lock
//! straight to the first waiter, in the release's own write and commit, as
//! PostgreSQL's lock manager grants a lock to its first waiter.  The waiter,
//! woken by that commit, finds the lock its own and writes nothing.  Releases
//! in an explicit transaction block do not hand over (the waiter could give up
//! before they commit): they wake the waiter, which takes the lock itself.
//!
//! One lock (an LWLock of pglock's own tranche) guards the seats; it is held
//! only to look at or change them, never while anyone sleeps.  Without shared
//! memory (pglock not preloaded) there are no queues: nobody is ever ahead, and
//! waits poll.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use pglock_protocol::{Heir, Lease, RoleId};
use pgrx::pg_sys;

use crate::clock;

/// How long a committing procedure's waiter keeps its place between steps.
const BETWEEN_STEPS: Duration = Duration::from_secs(2);

/// The most data a waiter's claim carries: a waiter asking for more takes the
/// lock itself when woken.
pub const INLINE_DATA: usize = 256;

/// The longest owner label, in bytes (255 characters of up to 4 bytes).
const OWNER_BYTES: usize = 4 * pglock_protocol::limits::MAX_LABEL_CHARS;

/// What a seat does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    /// Waits for one lock.
    Lock = 1,
    /// Waits for any slot of a semaphore.
    Slots = 2,
    /// Watches a lock change (`pglock_watch`), in no queue.
    Watch = 3,
}

/// A queue: what its seats wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    pub kind: Kind,
    pub database: u32,
    pub key: u64,
}

const FREE: u32 = 0;
const WAITING: u32 = 1;
const BETWEEN: u32 = 2;
const IDLE: u32 = 3;

/// One backend's seat.  Changed only under the queue lock, by its owner (or
/// freed at its exit); atomics because other processes read it.
#[repr(C)]
pub struct Seat {
    /// The owner's pid; 0 when the seat is free.
    pid: AtomicI32,
    state: AtomicU32,
    /// The owner's PGPROC, whose latch wakes it.
    process: AtomicUsize,
    kind: AtomicU32,
    database: AtomicU32,
    key: AtomicU64,
    ticket: AtomicU64,
    /// When the wait began, and (between steps) when the place lapses: ns on
    /// the monotonic clock.
    since: AtomicU64,
    lapses: AtomicU64,
    /// The RVN a release handed the lock over at (0: none), for this wait.
    granted: AtomicI64,
    /// What the waiter asked for; written by its owner under the lock, read by
    /// releasers under it.
    claim: UnsafeCell<Claim>,
}

// SAFETY: every field is an atomic, but `claim`, which is only written and read
// under the queue lock (exclusive to write).
unsafe impl Sync for Seat {}

/// A waiter's claim, as a release needs it to hand the lock over.
#[repr(C)]
struct Claim {
    /// 0: no claim (a slot's or a watch's seat, or data too large to carry).
    owner_len: u32,
    owner: [u8; OWNER_BYTES],
    lease: Lease,
    role: u32,
    data_len: u32,
    has_data: bool,
    replace_data: bool,
    data: [u8; INLINE_DATA],
}

/// What a waiter for one lock asks for, to leave in its seat.
pub struct Asking<'a> {
    pub owner: &'a str,
    pub lease: Lease,
    pub role: RoleId,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
}

/// The seats, as a backend reaches them.
#[derive(Clone, Copy)]
pub struct Waiters {
    lock: *mut pg_sys::LWLock,
    /// Seats waiting or watching (or between steps): none, and there is nothing
    /// to look at after a write.
    seated: &'static AtomicU32,
    next_ticket: &'static AtomicU64,
    seats: &'static [Seat],
}

thread_local! {
    /// This backend's seat, once it has one.
    static MY_SEAT: Cell<Option<usize>> = const { Cell::new(None) };
    /// Locks this transaction took the name lock of: their waiters are woken
    /// when it ends.
    static TOUCHED: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
}

impl Waiters {
    pub fn new(
        lock: *mut pg_sys::LWLock,
        seated: &'static AtomicU32,
        next_ticket: &'static AtomicU64,
        seats: &'static [Seat],
    ) -> Waiters {
        Waiters {
            lock,
            seated,
            next_ticket,
            seats,
        }
    }

    /// Whether someone waits in `place` ahead of this backend (anyone queued,
    /// if this backend is not queued there).
    pub fn queued_ahead(&self, place: Place) -> bool {
        if self.seated.load(Ordering::Relaxed) == 0 || place.kind == Kind::Watch {
            return false;
        }
        let _shared = self.locked(pg_sys::LWLockMode::LW_SHARED);
        let now = nanos(clock::now());
        let mine = MY_SEAT.get();
        let my_ticket = mine
            .map(|index| &self.seats[index])
            .filter(|seat| seat.holds(place, now))
            .map(|seat| seat.ticket.load(Ordering::Relaxed));
        self.seats.iter().enumerate().any(|(index, seat)| {
            Some(index) != mine
                && seat.holds(place, now)
                && my_ticket.is_none_or(|mine| seat.ticket.load(Ordering::Relaxed) < mine)
        })
    }

    /// How many wait in `place` (or watch it).
    pub fn count(&self, place: Place) -> usize {
        if self.seated.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let _shared = self.locked(pg_sys::LWLockMode::LW_SHARED);
        let now = nanos(clock::now());
        self.seats
            .iter()
            .filter(|seat| seat.holds(place, now))
            .count()
    }

    /// How many wait for a lock or a slot now, in every database.
    pub fn waiting(&self) -> usize {
        if self.seated.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let _shared = self.locked(pg_sys::LWLockMode::LW_SHARED);
        let now = nanos(clock::now());
        self.seats
            .iter()
            .filter(|seat| {
                seat.live(now) && seat.kind.load(Ordering::Relaxed) != Kind::Watch as u32
            })
            .count()
    }

    /// Take a place in `place`: at the back, or, for a committing procedure's
    /// next step, the place its last step kept.  `None` if this backend could not
    /// get a seat (more backends than the server counted): it then waits
    /// without a queue.
    pub fn sit(&self, place: Place, resume: bool, asking: Option<&Asking<'_>>) -> Option<Seated> {
        // Before the lock: registering may raise (too many exit callbacks).
        self.register_callbacks();
        let _exclusive = self.locked(pg_sys::LWLockMode::LW_EXCLUSIVE);
        let index = self.my_seat()?;
        let seat = &self.seats[index];
        let now = nanos(clock::now());
        let kept =
            resume && seat.state.load(Ordering::Relaxed) == BETWEEN && seat.holds(place, now);
        if seat.state.load(Ordering::Relaxed) != WAITING
            && seat.state.load(Ordering::Relaxed) != BETWEEN
        {
            self.seated.fetch_add(1, Ordering::Relaxed);
        }
        if !kept {
            seat.kind.store(place.kind as u32, Ordering::Relaxed);
            seat.database.store(place.database, Ordering::Relaxed);
            seat.key.store(place.key, Ordering::Relaxed);
            seat.ticket.store(
                self.next_ticket.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
            seat.since.store(now, Ordering::Relaxed);
            seat.granted.store(0, Ordering::Relaxed);
            // SAFETY: under the exclusive queue lock, the only writer of claims.
            unsafe { (*seat.claim.get()).set(asking) };
        }
        seat.state.store(WAITING, Ordering::Relaxed);
        Some(Seated {
            waiters: *self,
            place,
            index,
        })
    }

    /// The first waiter in `place` (a lock's queue), if a release may hand it
    /// the lock: waiting now, with a claim.
    pub fn heir(&self, place: Place) -> Option<Heir> {
        if self.seated.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let _shared = self.locked(pg_sys::LWLockMode::LW_SHARED);
        let now = nanos(clock::now());
        let first = self
            .seats
            .iter()
            .filter(|seat| seat.holds(place, now))
            .min_by_key(|seat| seat.ticket.load(Ordering::Relaxed))?;
        if first.state.load(Ordering::Relaxed) != WAITING {
            return None;
        }
        // SAFETY: under the queue lock, which writers of claims hold exclusively.
        let claim = unsafe { &*first.claim.get() };
        claim.heir(first.ticket.load(Ordering::Relaxed))
    }

    /// Tell the waiter of `ticket` in `place`, if it still waits, that this
    /// transaction handed it the lock at `rvn`.
    pub fn grant(&self, place: Place, ticket: u64, rvn: i64) {
        let _exclusive = self.locked(pg_sys::LWLockMode::LW_EXCLUSIVE);
        let now = nanos(clock::now());
        if let Some(seat) = self
            .seats
            .iter()
            .find(|seat| seat.holds(place, now) && seat.ticket.load(Ordering::Relaxed) == ticket)
        {
            seat.granted.store(rvn, Ordering::Relaxed);
        }
    }

    /// The RVN at which a release handed this backend the lock of `place`, for
    /// the wait under way there.
    pub fn granted_to_me(&self, place: Place) -> Option<i64> {
        let seat = &self.seats[MY_SEAT.get()?];
        let rvn = seat.granted.load(Ordering::Relaxed);
        (rvn != 0 && seat.holds(place, nanos(clock::now()))).then_some(rvn)
    }

    /// This backend's seat, taken now if it has none yet.  Under the lock.
    fn my_seat(&self) -> Option<usize> {
        if let Some(index) = MY_SEAT.get() {
            return Some(index);
        }
        // SAFETY: MyProcPid and MyProc are this backend's, set before SQL runs.
        let (pid, process) = unsafe { (pg_sys::MyProcPid, pg_sys::MyProc as usize) };
        let index = self
            .seats
            .iter()
            .position(|seat| seat.pid.load(Ordering::Relaxed) == 0)?;
        let seat = &self.seats[index];
        seat.pid.store(pid, Ordering::Relaxed);
        seat.process.store(process, Ordering::Relaxed);
        seat.state.store(IDLE, Ordering::Relaxed);
        MY_SEAT.set(Some(index));
        Some(index)
    }

    /// Leave the queue of `seated` (or, `between_steps`, keep the place a
    /// little while), and wake whoever is first now.
    fn leave(&self, seated: &Seated, between_steps: bool) {
        {
            let _exclusive = self.locked(pg_sys::LWLockMode::LW_EXCLUSIVE);
            let seat = &self.seats[seated.index];
            if between_steps {
                let lapses = nanos(clock::now() + BETWEEN_STEPS);
                seat.lapses.store(lapses, Ordering::Relaxed);
                seat.state.store(BETWEEN, Ordering::Relaxed);
                return;
            }
            seat.state.store(IDLE, Ordering::Relaxed);
            self.seated.fetch_sub(1, Ordering::Relaxed);
        }
        self.wake(&[(seated.place.database, seated.place.key)]);
    }

    /// Set the latch of the first waiter of each lock or semaphore of `keys`,
    /// and of every watcher of them.
    pub fn wake(&self, keys: &[(u32, u64)]) {
        if self.seated.load(Ordering::Relaxed) == 0 || keys.is_empty() {
            return;
        }
        let keys: HashSet<(u32, u64)> = keys.iter().copied().collect();
        let _shared = self.locked(pg_sys::LWLockMode::LW_SHARED);
        let now = nanos(clock::now());
        // The first of each queue: (kind, database, key) -> (ticket, seat).
        let mut first: std::collections::HashMap<(u32, u32, u64), (u64, usize)> =
            std::collections::HashMap::new();
        let mut woken = Vec::new();
        for (index, seat) in self.seats.iter().enumerate() {
            if !seat.live(now) {
                continue;
            }
            let (database, key) = (
                seat.database.load(Ordering::Relaxed),
                seat.key.load(Ordering::Relaxed),
            );
            if !keys.contains(&(database, key)) {
                continue;
            }
            let kind = seat.kind.load(Ordering::Relaxed);
            if kind == Kind::Watch as u32 {
                woken.push(index);
                continue;
            }
            let ticket = seat.ticket.load(Ordering::Relaxed);
            first
                .entry((kind, database, key))
                .and_modify(|best| {
                    if ticket < best.0 {
                        *best = (ticket, index);
                    }
                })
                .or_insert((ticket, index));
        }
        woken.extend(first.values().map(|(_, index)| *index));
        for index in woken {
            let process = self.seats[index].process.load(Ordering::Relaxed) as *mut pg_sys::PGPROC;
            // SAFETY: the PGPROC of a live backend (seats are freed before their
            // owner exits); setting its latch is what any process may do.
            unsafe { pg_sys::SetLatch(&raw mut (*process).procLatch) };
        }
    }

    /// Free this backend's seat as it exits, waking whoever was behind it.
    fn free_mine(&self) {
        let Some(index) = MY_SEAT.take() else {
            return;
        };
        let seat = &self.seats[index];
        let place = {
            let _exclusive = self.locked(pg_sys::LWLockMode::LW_EXCLUSIVE);
            let state = seat.state.load(Ordering::Relaxed);
            let place = (
                seat.database.load(Ordering::Relaxed),
                seat.key.load(Ordering::Relaxed),
            );
            if state == WAITING || state == BETWEEN {
                self.seated.fetch_sub(1, Ordering::Relaxed);
            }
            seat.state.store(FREE, Ordering::Relaxed);
            seat.pid.store(0, Ordering::Relaxed);
            (state == WAITING || state == BETWEEN).then_some(place)
        };
        if let Some(place) = place {
            self.wake(&[place]);
        }
    }

    fn locked(&self, mode: pg_sys::LWLockMode::Type) -> QueueLock {
        // SAFETY: the tranche's lock, valid for the server's life; released by
        // the guard (or by PostgreSQL's error clean-up, which releases every
        // LWLock).  Nothing under it raises or sleeps.
        unsafe { pg_sys::LWLockAcquire(self.lock, mode) };
        QueueLock(self.lock)
    }
}

struct QueueLock(*mut pg_sys::LWLock);

impl Drop for QueueLock {
    fn drop(&mut self) {
        // SAFETY: acquired in `locked`, released once.
        unsafe { pg_sys::LWLockRelease(self.0) };
    }
}

impl Seat {
    /// Whether this seat waits (or watches) in `place` now.
    fn holds(&self, place: Place, now: u64) -> bool {
        self.live(now)
            && self.kind.load(Ordering::Relaxed) == place.kind as u32
            && self.database.load(Ordering::Relaxed) == place.database
            && self.key.load(Ordering::Relaxed) == place.key
    }

    /// Waiting now, or between steps with its place not yet lapsed.
    fn live(&self, now: u64) -> bool {
        match self.state.load(Ordering::Relaxed) {
            WAITING => true,
            BETWEEN => self.lapses.load(Ordering::Relaxed) > now,
            _ => false,
        }
    }
}

impl Claim {
    fn set(&mut self, asking: Option<&Asking<'_>>) {
        self.owner_len = 0;
        let Some(asking) = asking else {
            return;
        };
        let owner = asking.owner.as_bytes();
        let data = asking.data.unwrap_or_default();
        if owner.len() > OWNER_BYTES || data.len() > INLINE_DATA {
            return;
        }
        self.owner[..owner.len()].copy_from_slice(owner);
        self.lease = asking.lease;
        self.role = asking.role.0;
        self.has_data = asking.data.is_some();
        self.data_len = data.len() as u32;
        self.data[..data.len()].copy_from_slice(data);
        self.replace_data = asking.replace_data;
        self.owner_len = owner.len() as u32;
    }

    fn heir(&self, ticket: u64) -> Option<Heir> {
        if self.owner_len == 0 {
            return None;
        }
        let owner = &self.owner[..self.owner_len as usize];
        Some(Heir {
            owner: String::from_utf8_lossy(owner).into_owned(),
            lease: self.lease,
            role: RoleId(self.role),
            data: self
                .has_data
                .then(|| self.data[..self.data_len as usize].to_vec()),
            replace_data: self.replace_data,
            ticket,
        })
    }
}

/// A place taken in a queue; dropping it leaves the queue and wakes the next.
pub struct Seated {
    waiters: Waiters,
    place: Place,
    index: usize,
}

impl Seated {
    /// Keep the place for the committing procedure's next step.
    pub fn keep_between_steps(self) {
        self.waiters.leave(&self, true);
        std::mem::forget(self);
    }
}

impl Drop for Seated {
    fn drop(&mut self) {
        self.waiters.leave(self, false);
    }
}

impl Waiters {
    /// Note that this transaction took the name lock of the lock `key` (or of
    /// a semaphore's slots): its waiters are woken when the transaction ends.
    pub fn touched(&self, database: u32, key: u64) {
        self.register_callbacks();
        TOUCHED.with_borrow_mut(|touched| touched.push((database, key)));
    }

    /// Register, once per backend, the wake-ups at the end of each transaction
    /// and the clean-up at exit, each given these seats.
    fn register_callbacks(&self) {
        if CALLBACKS.get() {
            return;
        }
        let waiters: *mut Waiters = Box::into_raw(Box::new(*self));
        // SAFETY: functions registered for the backend's life with a copy of
        // these seats (which live as long as shared memory) that is never
        // freed; neither raises (see each).
        unsafe {
            pg_sys::RegisterResourceReleaseCallback(Some(transaction_ended), waiters.cast());
            pg_sys::before_shmem_exit(Some(backend_exits), pg_sys::Datum::from(waiters));
        }
        CALLBACKS.set(true);
    }
}

/// After a top-level transaction released its locks: wake the waiters of the
/// locks it touched.  Must not raise: it runs after the commit.
///
/// # Safety
/// Only as registered by `register_callbacks`, with its `waiters`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn transaction_ended(
    phase: pg_sys::ResourceReleasePhase::Type,
    _is_commit: bool,
    is_top_level: bool,
    waiters: *mut std::ffi::c_void,
) {
    if phase != pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS || !is_top_level {
        return;
    }
    let touched = TOUCHED.with_borrow_mut(std::mem::take);
    if !touched.is_empty() {
        // SAFETY: as the caller guarantees.
        unsafe { &*waiters.cast::<Waiters>() }.wake(&touched);
    }
}

/// The backend exits (a `pg_terminate_backend` included): leave any queue and
/// free the seat.
///
/// # Safety
/// Only as registered by `register_callbacks`, with its `waiters`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn backend_exits(_code: std::ffi::c_int, waiters: pg_sys::Datum) {
    // SAFETY: as the caller guarantees.
    unsafe { &*waiters.cast_mut_ptr::<Waiters>() }.free_mine();
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}
