//! pglock's shared memory, when the server preloads it
//! (`shared_preload_libraries = 'pglock'`): the operators' counters, what the
//! server observed of each lock (`observed`), and the queues of waiters
//! (`waiters`).  Without preloading there is none, and each of those says how
//! it does without.
//!
//! One region, sized once when the server starts: a fixed header, then
//! `pglock.observed_locks` observations (in buckets), then one seat per backend
//! that may wait.  Nothing in it grows, whatever callers do: a role that writes
//! many locks only makes the server forget older observations sooner
//! (`observed`), and a backend waits for one thing at a time.  The postmaster
//! creates it (again after a crash) and every backend inherits where it is.

use std::ffi::{c_int, CStr};
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::counters::Counters;
use crate::observed::{Bucket, Observations, WAYS};
use crate::waiters::{Seat, Waiters};

/// `pglock.observed_locks`: how many locks' last writes the server remembers.
pub static OBSERVED_LOCKS: GucSetting<i32> = GucSetting::<i32>::new(16_384);
const MIN_OBSERVED_LOCKS: i32 = 64;
const MAX_OBSERVED_LOCKS: i32 = 1 << 22;

const REGION_NAME: &CStr = c"pglock";
const TRANCHE_NAME: &CStr = c"pglock";

/// The start of the region: everything but the two arrays that follow it.
#[repr(C)]
struct Header {
    counters: Counters,
    /// See `observed`: since when the server watches (ns on the monotonic
    /// clock, 0 until its first call as a primary) and how many observations it
    /// had to forget.
    watching_since: AtomicU64,
    forgotten: AtomicU64,
    /// See `waiters`: seats in use by a wait or a watch, and the next arrival's
    /// number.
    seated: AtomicU32,
    next_ticket: AtomicU64,
    buckets: usize,
    seats: usize,
}

/// The region's parts, as a backend reaches them.
pub struct Shared {
    pub counters: &'static Counters,
    pub observations: Observations<'static>,
    pub waiters: Waiters,
}

static REGION: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());
static QUEUE_LOCK: AtomicPtr<pg_sys::LWLock> = AtomicPtr::new(ptr::null_mut());

/// pglock's shared memory, if the server preloaded pglock.
pub fn get() -> Option<Shared> {
    let header = REGION.load(Ordering::Acquire);
    if header.is_null() {
        return None;
    }
    // SAFETY: set by `attach` to a region of `Header` followed by its arrays,
    // which lives as long as the server's shared memory (the process's life).
    let header: &'static Header = unsafe { &*header };
    // SAFETY: as above; the arrays' lengths are the header's.
    let (buckets, seats) = unsafe { arrays(header) };
    Some(Shared {
        counters: &header.counters,
        observations: Observations::new(&header.watching_since, &header.forgotten, buckets),
        waiters: Waiters::new(
            QUEUE_LOCK.load(Ordering::Acquire),
            &header.seated,
            &header.next_ticket,
            seats,
        ),
    })
}

/// Called from `_PG_init`: when the server is starting with pglock in
/// `shared_preload_libraries`, define pglock's settings and reserve its shared
/// memory.  Loaded later (a backend's first call), there is none to reserve.
pub fn init() {
    if !crate::session::preloading_libraries() {
        return;
    }
    GucRegistry::define_int_guc(
        c"pglock.observed_locks",
        c"How many locks' last writes the server remembers, to take over a silent holder's lock without waiting out its lease again.",
        c"Each costs 34 bytes of shared memory.  When full, the oldest is forgotten, and the locks it shared a bucket with count as unchanged only since its write.",
        &OBSERVED_LOCKS,
        MIN_OBSERVED_LOCKS,
        MAX_OBSERVED_LOCKS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: hooks are set once, in the postmaster, while it loads libraries;
    // each calls the hook it replaced first.
    unsafe {
        #[cfg(feature = "pg14")]
        request();
        #[cfg(not(feature = "pg14"))]
        {
            PREVIOUS_REQUEST.store(hook_address(pg_sys::shmem_request_hook), Ordering::Relaxed);
            pg_sys::shmem_request_hook = Some(on_request);
        }
        PREVIOUS_STARTUP.store(hook_address(pg_sys::shmem_startup_hook), Ordering::Relaxed);
        pg_sys::shmem_startup_hook = Some(on_startup);
        #[cfg(feature = "pg14")]
        pg_sys::EmitWarningsOnPlaceholders(c"pglock".as_ptr());
        #[cfg(not(feature = "pg14"))]
        pg_sys::MarkGUCPrefixReserved(c"pglock".as_ptr());
    }
}

type Hook = unsafe extern "C-unwind" fn();

static PREVIOUS_REQUEST: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());
static PREVIOUS_STARTUP: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

fn hook_address(hook: Option<Hook>) -> *mut () {
    hook.map_or(ptr::null_mut(), |hook| hook as *mut ())
}

/// Call the hook stored at `slot`, if any.
///
/// # Safety
/// `slot` holds null or a hook read from PostgreSQL's hook variable, which is
/// a valid function of that type for the postmaster's life.
unsafe fn call_previous(slot: &AtomicPtr<()>) {
    let previous = slot.load(Ordering::Relaxed);
    if !previous.is_null() {
        // SAFETY: stored from an `Option<Hook>` by `hook_address` (see above).
        let hook: Hook = unsafe { std::mem::transmute::<*mut (), Hook>(previous) };
        // SAFETY: calling the hook PostgreSQL had installed, as it would have.
        unsafe { hook() };
    }
}

/// PostgreSQL's shared-memory request hook (15 and later).
///
/// # Safety
/// Only as that hook, installed by [`init`].
#[cfg(not(feature = "pg14"))]
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: the previous hook, called as PostgreSQL would have; then our
    // request, made inside the request hook as PostgreSQL requires.
    unsafe {
        call_previous(&PREVIOUS_REQUEST);
        request();
    }
}

/// PostgreSQL's shared-memory startup hook.
///
/// # Safety
/// Only as that hook, installed by [`init`].
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: the previous hook, then our attach, inside the startup hook.
    unsafe {
        call_previous(&PREVIOUS_STARTUP);
        attach();
    }
}

/// Ask for the region and the queue's lock.
///
/// # Safety
/// Only while the postmaster loads libraries (PostgreSQL 14) or in its
/// shared-memory request hook (15 and later).
unsafe fn request() {
    let (buckets, seats) = sizes();
    // SAFETY: the caller is where PostgreSQL allows these requests.
    unsafe {
        pg_sys::RequestAddinShmemSpace(region_size(buckets, seats));
        pg_sys::RequestNamedLWLockTranche(TRANCHE_NAME.as_ptr(), 1);
    }
}

/// Find (or, the first time after a start or a crash, create) the region, and
/// publish where it is to the backends the postmaster starts.
///
/// # Safety
/// Only in the shared-memory startup hook, after [`request`].
unsafe fn attach() {
    let (buckets, seats) = sizes();
    let size = region_size(buckets, seats);
    // SAFETY: AddinShmemInitLock (MainLWLockArray[21], as pgrx reaches it)
    // serialises the creation of add-ins' regions; ShmemInitStruct returns a
    // region of `size` bytes, zeroed by us when new.  Zero is a valid value of
    // every atomic and count in it: no lock observed, every seat free.
    unsafe {
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let region = pg_sys::ShmemInitStruct(REGION_NAME.as_ptr(), size, &mut found);
        let header = region.cast::<Header>();
        if !header.is_aligned() {
            crate::error::bug("pglock's shared memory is not aligned");
        }
        if !found {
            ptr::write_bytes(region.cast::<u8>(), 0, size);
            (*header).buckets = buckets;
            (*header).seats = seats;
        }
        let tranche = pg_sys::GetNamedLWLockTranche(TRANCHE_NAME.as_ptr());
        QUEUE_LOCK.store(&raw mut (*tranche).lock, Ordering::Release);
        REGION.store(header, Ordering::Release);
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Observation buckets and waiter seats for this server's settings.
fn sizes() -> (usize, usize) {
    let observed = usize::try_from(OBSERVED_LOCKS.get()).unwrap_or(0);
    (observed.div_ceil(WAYS).max(1), max_backends())
}

/// How many backends may run at once: each may wait for one thing at a time.
fn max_backends() -> usize {
    // SAFETY: settings the postmaster read before loading libraries; from 15 on,
    // MaxBackends is computed before the request hook runs.
    let backends: c_int = unsafe {
        #[cfg(feature = "pg14")]
        {
            // PostgreSQL 14 computes MaxBackends after loading libraries: add up
            // what it will (autovacuum workers never wait for pglock).
            pg_sys::MaxConnections + pg_sys::max_worker_processes + pg_sys::max_wal_senders + 1
        }
        #[cfg(not(feature = "pg14"))]
        {
            pg_sys::MaxBackends
        }
    };
    usize::try_from(backends).unwrap_or(0).max(1)
}

fn region_size(buckets: usize, seats: usize) -> usize {
    seats_offset(buckets) + seats * size_of::<Seat>()
}

fn buckets_offset() -> usize {
    size_of::<Header>().next_multiple_of(64)
}

fn seats_offset(buckets: usize) -> usize {
    (buckets_offset() + buckets * size_of::<Bucket>()).next_multiple_of(64)
}

/// The arrays after `header`.
///
/// # Safety
/// `header` is the start of a region made by [`attach`].
unsafe fn arrays(header: &'static Header) -> (&'static [Bucket], &'static [Seat]) {
    let base = ptr::from_ref(header).cast::<u8>();
    // SAFETY: the region holds `buckets` buckets and `seats` seats at these
    // offsets (see `region_size`), valid for the server's life.
    unsafe {
        let buckets =
            std::slice::from_raw_parts(base.add(buckets_offset()).cast::<Bucket>(), header.buckets);
        let seats = std::slice::from_raw_parts(
            base.add(seats_offset(header.buckets)).cast::<Seat>(),
            header.seats,
        );
        (buckets, seats)
    }
}
