//! Waiting in tests without hanging: every wait has a deadline and says what it
//! waited for, and a thread that panics makes its test fail at once instead of
//! leaving the others blocked at a barrier or the test thread blocked in a join.

use std::any::Any;
use std::panic;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest a test waits for something that takes a moment when all is well.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Poll `done` every 10 ms until it is true; panic naming `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The panic of a thread that stopped because another thread failed; never the
/// failure a test reports.
#[derive(Debug)]
pub struct Aborted;

/// Unwind this thread with [`Aborted`], quietly: the failure worth reading is the
/// other thread's, already printed.
fn stop_aborted() -> ! {
    panic::resume_unwind(Box::new(Aborted))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding the mutex left consistent state: every
    // change below is a single assignment.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A barrier that breaks instead of hanging: when a member thread panics (its
/// [`Rendezvous::member`] guard drops while unwinding) or a wait passes
/// [`WAIT_LIMIT`], every thread waiting or arriving later stops too.
pub struct Rendezvous {
    parties: usize,
    state: Mutex<RendezvousState>,
    changed: Condvar,
}

struct RendezvousState {
    arrived: usize,
    generation: u64,
    broken: bool,
}

/// Breaks its rendezvous if the thread holding it panics.
pub struct Member(Arc<Rendezvous>);

impl Drop for Member {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.break_up();
        }
    }
}

impl Rendezvous {
    pub fn new(parties: usize) -> Arc<Rendezvous> {
        Arc::new(Rendezvous {
            parties,
            state: Mutex::new(RendezvousState {
                arrived: 0,
                generation: 0,
                broken: false,
            }),
            changed: Condvar::new(),
        })
    }

    /// Hold the returned guard for the whole life of each member thread.
    pub fn member(self: &Arc<Self>) -> Member {
        Member(Arc::clone(self))
    }

    fn break_up(&self) {
        lock(&self.state).broken = true;
        self.changed.notify_all();
    }

    /// Wait until all parties arrive; true for exactly one of them per round (the
    /// last to arrive).  Panics with [`Aborted`] if the rendezvous broke.
    pub fn wait(&self) -> bool {
        let mut state = lock(&self.state);
        if state.broken {
            drop(state);
            stop_aborted();
        }
        state.arrived += 1;
        if state.arrived == self.parties {
            state.arrived = 0;
            state.generation += 1;
            self.changed.notify_all();
            return true;
        }
        let generation = state.generation;
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if state.generation != generation {
                return false;
            }
            if state.broken {
                drop(state);
                stop_aborted();
            }
            let now = Instant::now();
            if now >= deadline {
                let arrived = state.arrived;
                state.broken = true;
                drop(state);
                self.changed.notify_all();
                panic!(
                    "timed out after {WAIT_LIMIT:?} at a rendezvous: {arrived} of {} threads arrived",
                    self.parties
                );
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// Join `thread`; its panic becomes the caller's.
pub fn join<T>(thread: JoinHandle<T>) -> T {
    thread
        .join()
        .unwrap_or_else(|failure| panic::resume_unwind(failure))
}

/// Join `threads` (results in their order).  The first thread to panic fails the
/// caller at once, whatever the others are doing; threads still running after
/// `limit` fail it too, naming `what`.
pub fn join_all<T>(what: &str, threads: Vec<JoinHandle<T>>, limit: Duration) -> Vec<T> {
    let deadline = Instant::now() + limit;
    let count = threads.len();
    let mut running: Vec<Option<JoinHandle<T>>> = threads.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = running.iter().map(|_| None).collect();
    let mut aborted: Option<Box<dyn Any + Send>> = None;
    loop {
        let mut still_running = 0;
        for (index, slot) in running.iter_mut().enumerate() {
            match slot.take() {
                Some(thread) if thread.is_finished() => match thread.join() {
                    Ok(result) => results[index] = Some(result),
                    // Stopped because another thread failed: report that one.
                    Err(failure) if failure.is::<Aborted>() => aborted = Some(failure),
                    Err(failure) => panic::resume_unwind(failure),
                },
                Some(thread) => {
                    still_running += 1;
                    *slot = Some(thread);
                }
                None => {}
            }
        }
        if still_running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} joining {what}: {still_running} of {count} threads still running"
        );
        thread::sleep(Duration::from_millis(10));
    }
    if let Some(failure) = aborted {
        panic::resume_unwind(failure);
    }
    results.into_iter().flatten().collect()
}

/// Held by a helper thread while the test thread waits inside backend `pid`: if
/// the helper panics, the guard terminates that backend, so the test thread's
/// call returns at once and the test can report the helper's failure (join the
/// helper before looking at the call's outcome).
pub struct TerminateOnPanic {
    pub pid: i32,
}

impl Drop for TerminateOnPanic {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        // No panicking here: this runs while unwinding.
        if let Ok(mut admin) = crate::config_as("postgres").connect(postgres::NoTls) {
            let _ = admin.execute("SELECT pg_terminate_backend($1)", &[&self.pid]);
        }
    }
}
