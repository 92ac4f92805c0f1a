//! Waiting in tests without hanging: every wait has a deadline and says what it
//! waited for, and a thread that panics makes its test fail at once instead of
//! leaving the others blocked at a barrier or the test thread blocked in a join.

use std::any::Any;
use std::panic;
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
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

/// Run `command` to its end and return what it printed; panic naming `what` (and
/// kill it) if it runs longer than `limit`.
pub fn output_within(command: &mut Command, what: &str, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {what}: {error}"));
    let pid = child.id().to_string();
    let (sender, finished) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => output.unwrap_or_else(|error| panic!("{what}: {error}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("timed out after {limit:?} waiting for {what}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn panic_message(failure: Box<dyn Any + Send>) -> String {
        failure
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| failure.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    }

    /// Threads meeting at a rendezvous of three, member 1 panicking first.
    fn members_with_one_failing() -> Vec<JoinHandle<()>> {
        let rendezvous = Rendezvous::new(3);
        (0..3)
            .map(|member| {
                let rendezvous = Arc::clone(&rendezvous);
                thread::spawn(move || {
                    let _member = rendezvous.member();
                    if member == 1 {
                        panic!("member 1 failed");
                    }
                    rendezvous.wait();
                })
            })
            .collect()
    }

    #[test]
    fn join_all_reports_the_first_failure() {
        let failure = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            join_all("members", members_with_one_failing(), WAIT_LIMIT)
        }))
        .expect_err("a member failed");
        assert_eq!(panic_message(failure), "member 1 failed");
    }

    #[test]
    fn a_member_that_panics_stops_the_others_waiting() {
        let mut members = members_with_one_failing();
        let failed = members.remove(1).join().expect_err("member 1 failed");
        assert_eq!(panic_message(failed), "member 1 failed");
        // Had the rendezvous not broken, they would wait WAIT_LIMIT and then fail
        // with a timeout, not stop as aborted.
        for member in members {
            let stopped = member.join().expect_err("stopped by the failure");
            assert!(stopped.is::<Aborted>(), "{}", panic_message(stopped));
        }
    }

    #[test]
    fn a_rendezvous_lets_everyone_through_with_one_leader_per_round() {
        let rendezvous = Rendezvous::new(4);
        let threads = (0..4)
            .map(|_| {
                let rendezvous = Arc::clone(&rendezvous);
                thread::spawn(move || {
                    let _member = rendezvous.member();
                    (0..3).filter(|_| rendezvous.wait()).count()
                })
            })
            .collect();
        let leaderships: usize = join_all("members", threads, WAIT_LIMIT).iter().sum();
        assert_eq!(leaderships, 3);
    }

    #[test]
    fn a_program_that_runs_too_long_is_killed_and_named() {
        let failure = panic::catch_unwind(|| {
            output_within(
                Command::new("sleep").arg("30"),
                "sleep 30",
                Duration::from_millis(200),
            )
        })
        .expect_err("sleep outlives its limit");
        assert_eq!(
            panic_message(failure),
            "timed out after 200ms waiting for sleep 30"
        );
        let output = output_within(Command::new("echo").arg("done"), "echo", WAIT_LIMIT);
        assert_eq!(String::from_utf8_lossy(&output.stdout), "done\n");
    }
}
