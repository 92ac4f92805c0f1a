//! Waiters in the server's queue (pglock preloaded): served in the order they
//! came, handed a released lock in the release's own commit, never stalled by
//! one that left, never jumped by a plain acquire; and visible to operators.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{
    acquire, acquire_wait, assert_cancelled_by_request, backend_pid, connect, connect_as, join,
    join_all, pglock_role, release, unique_name, wait_as_waiter, wait_for, wait_until_asleep,
    Acquire, Client, Rendezvous, TerminateOnPanic, WAIT_LIMIT,
};

/// A wait_timeout that only a wait gone wrong reaches.
const LONG_WAIT: Duration = Duration::from_secs(60);

/// `client`, its backend asleep in a wait for `name` (as `owner`), on a thread.
fn waiting(
    client: Client,
    name: &str,
    owner: &str,
    observer: &mut Client,
) -> thread::JoinHandle<(Client, Result<Acquire, pglock_tests::Error>)> {
    let mut client = client;
    let pid = backend_pid(&mut client);
    let (name, owner) = (name.to_owned(), owner.to_owned());
    let thread = thread::spawn(move || {
        let outcome = acquire_wait(&mut client, &name, &owner, LONG_WAIT, Some(LONG_WAIT));
        (client, outcome)
    });
    wait_until_asleep(observer, pid);
    thread
}

#[test]
fn waiters_are_served_in_the_order_they_came() {
    const WAITERS: usize = 8;
    let name = unique_name("queue-order");
    let mut holder = connect();
    let mut observer = connect();
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for n in 0..WAITERS {
        let mut client = connect();
        let pid = backend_pid(&mut client);
        let (name, served) = (name.clone(), Arc::clone(&served));
        threads.push(thread::spawn(move || {
            let owner = format!("waiter-{n}");
            let taken =
                acquire_wait(&mut client, &name, &owner, LONG_WAIT, Some(LONG_WAIT)).unwrap();
            assert!(taken.acquired, "{owner} waited {LONG_WAIT:?} in vain");
            served.lock().unwrap().push(n);
            assert!(release(&mut client, &name, &owner, taken.rvn, false).unwrap());
        }));
        // Each asleep in its wait, and 100 ms apart, before the next arrives.
        wait_until_asleep(&mut observer, pid);
        thread::sleep(Duration::from_millis(100));
    }
    assert!(release(&mut holder, &name, "holder", held.rvn, false).unwrap());
    join_all("waiters", threads, LONG_WAIT);
    let served = served.lock().unwrap().clone();
    assert_eq!(
        served,
        (0..WAITERS).collect::<Vec<_>>(),
        "first come, first served"
    );
}

/// 16 sessions re-queue for one lock again and again: each is served, and none
/// is passed over by more than the others in the queue between asking and
/// getting it.
#[test]
fn sessions_that_queue_again_and_again_are_each_served_and_never_passed_over_more_than_the_queue() {
    const SESSIONS: usize = 16;
    let name = unique_name("queue-fair");
    let run_for = Duration::from_secs(30);
    let start = Rendezvous::new(SESSIONS);
    // The highest RVN any session has been answered with so far: what a session
    // reads of it just before it asks was given out before it asked.
    let answered = Arc::new(AtomicI64::new(0));
    // Every acquisition: (session, its RVN, `answered` just before it asked).
    let log = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..SESSIONS)
        .map(|n| {
            let (name, start, log, answered) = (
                name.clone(),
                start.clone(),
                Arc::clone(&log),
                Arc::clone(&answered),
            );
            thread::spawn(move || {
                let _member = start.member();
                let mut client = connect();
                let owner = format!("session-{n}");
                start.wait();
                let until = Instant::now() + run_for;
                let mut served = 0;
                while Instant::now() < until {
                    let before = answered.load(Ordering::SeqCst);
                    let taken =
                        acquire_wait(&mut client, &name, &owner, LONG_WAIT, Some(LONG_WAIT))
                            .unwrap();
                    assert!(taken.acquired, "{owner} waited {LONG_WAIT:?} in vain");
                    answered.fetch_max(taken.rvn, Ordering::SeqCst);
                    log.lock().unwrap().push((n, taken.rvn, before));
                    served += 1;
                    thread::sleep(Duration::from_millis(2));
                    assert!(release(&mut client, &name, &owner, taken.rvn, false).unwrap());
                }
                served
            })
        })
        .collect();
    let served: Vec<usize> = join_all("sessions", threads, run_for + LONG_WAIT);
    assert!(
        served.iter().all(|count| *count > 0),
        "every session served: {served:?}"
    );
    let log = log.lock().unwrap().clone();
    // Passed over: acquisitions by others given out after the session asked
    // (above what had been answered by then) and before its own.  The holder's
    // own acquisition may still have been on its way back when the session
    // asked, and the holder's release may hand the lock on before the session's
    // request arrives: two the session could not have been queued for.
    let worst = log
        .iter()
        .map(|(session, rvn, before)| {
            log.iter()
                .filter(|(other, other_rvn, _)| {
                    other != session && other_rvn > before && other_rvn < rvn
                })
                .count()
        })
        .max()
        .unwrap_or(0);
    let in_flight = 2;
    assert!(
        worst <= SESSIONS - 1 + in_flight,
        "a session was passed over {worst} times ({} acquisitions)",
        log.len()
    );
    let (most, least) = (served.iter().max().unwrap(), served.iter().min().unwrap());
    assert!(most <= &(least * 2 + 2), "served {served:?}");
}

/// A release hands the lock to the first waiter in its own write: the waiter's
/// lock row is the releaser's transaction's, and the waiter wrote nothing.
#[test]
fn a_release_hands_the_lock_to_the_first_waiter_in_its_own_commit() {
    let name = unique_name("queue-handover");
    let mut holder = connect();
    let mut observer = connect();
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let waiter = waiting(connect(), &name, "waiter", &mut observer);
    let releaser_xid: i64 = holder
        .query_one(
            "SELECT txid_current() FROM (SELECT pglock_release($1, 'holder', $2)) r",
            &[&name, &held.rvn],
        )
        .unwrap()
        .get(0);
    let (_, taken) = join(waiter);
    let taken = taken.unwrap();
    assert!(taken.acquired && taken.owner == "waiter" && taken.rvn > held.rvn);
    let row = connect()
        .query_one(
            "SELECT xmin::text::bigint, owner, rvn FROM pglock.locks WHERE name = $1",
            &[&name],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, String>(1),
            row.get::<_, i64>(2)
        ),
        (releaser_xid, "waiter".to_owned(), taken.rvn)
    );
}

/// A waiter that leaves (its wait_timeout, a cancel, statement_timeout,
/// termination) leaves the queue at once: the next one gets the lock.
#[test]
fn a_waiter_that_leaves_never_stalls_the_queue() {
    for how in ["wait_timeout", "cancel", "statement_timeout", "terminate"] {
        let name = unique_name(&format!("queue-leave-{how}"));
        let mut holder = connect();
        let mut observer = connect();
        let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
        // The first waiter, which leaves.
        let mut first = connect();
        let first_pid = backend_pid(&mut first);
        let leaving = {
            let name = name.clone();
            thread::spawn(move || match how {
                "wait_timeout" => acquire_wait(
                    &mut first,
                    &name,
                    "first",
                    LONG_WAIT,
                    Some(Duration::from_secs(1)),
                )
                .map(|outcome| assert!(!outcome.acquired)),
                "statement_timeout" => {
                    first.batch_execute("SET statement_timeout = '1s'").unwrap();
                    acquire_wait(&mut first, &name, "first", LONG_WAIT, None).map(drop)
                }
                _ => acquire_wait(&mut first, &name, "first", LONG_WAIT, None).map(drop),
            })
        };
        wait_until_asleep(&mut observer, first_pid);
        let second = waiting(connect(), &name, "second", &mut observer);
        match how {
            "cancel" => {
                observer
                    .execute("SELECT pg_cancel_backend($1)", &[&first_pid])
                    .unwrap();
            }
            "terminate" => {
                observer
                    .execute("SELECT pg_terminate_backend($1)", &[&first_pid])
                    .unwrap();
            }
            _ => {}
        }
        let left = join(leaving);
        match how {
            "wait_timeout" => left.unwrap(),
            "cancel" => assert_cancelled_by_request(left, how),
            _ => assert!(left.is_err(), "{how}"),
        }
        // The first one gone, the release goes to the second, at once.
        wait_for("the first waiter gone from the queue", WAIT_LIMIT, || {
            waiters(&mut observer, &name) == 1
        });
        assert!(release(&mut holder, &name, "holder", held.rvn, false).unwrap());
        let (_, taken) = join(second);
        let taken = taken.unwrap();
        assert!(
            taken.acquired && taken.owner == "second",
            "{how}: {taken:?}"
        );
    }
}

/// How many wait for `name`, as operators see it.
fn waiters(observer: &mut Client, name: &str) -> i32 {
    observer
        .query_opt("SELECT waiters FROM pglock_locks WHERE name = $1", &[&name])
        .unwrap()
        .map_or(0, |row| row.get(0))
}

/// Stops a backend (SIGSTOP) while the guard lives: it keeps its place in the
/// queue but cannot act, which makes the moment after a release last.
struct Stopped {
    pid: i32,
}

impl Stopped {
    fn new(pid: i32) -> Stopped {
        signal("STOP", pid);
        Stopped { pid }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("CONT", self.pid);
    }
}

fn signal(signal: &str, pid: i32) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A plain `pglock_acquire` does not jump the queue: a lock freed for a queued
/// waiter is refused to it (with no holder to show), or shown as handed over.
#[test]
fn a_plain_acquire_does_not_jump_ahead_of_the_queue() {
    let name = unique_name("queue-nojump");
    let mut holder = connect();
    let mut observer = connect();
    let mut jumper = connect();

    // Released in a transaction block: no hand-over, the waiter is woken to
    // take the lock itself; stopped, it cannot yet.
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let mut waiter = connect();
    let waiter_pid = backend_pid(&mut waiter);
    let thread = waiting(waiter, &name, "waiter", &mut observer);
    {
        let _stopped = Stopped::new(waiter_pid);
        holder.batch_execute("BEGIN").unwrap();
        assert!(release(&mut holder, &name, "holder", held.rvn, false).unwrap());
        holder.batch_execute("COMMIT").unwrap();
        let row = jumper
            .query_one(
                "SELECT acquired, rvn, owner, lease FROM pglock_acquire($1, 'jumper')",
                &[&name],
            )
            .unwrap();
        assert!(!row.get::<_, bool>(0), "the queued waiter comes first");
        assert_eq!(
            row.get::<_, Option<i64>>(1),
            None,
            "a free lock has no holder to show"
        );
        assert_eq!(row.get::<_, Option<String>>(2), None);
    }
    let (mut waiter, taken) = join(thread);
    let taken = taken.unwrap();
    assert!(taken.acquired && taken.owner == "waiter");

    // Released in autocommit: handed over in the release's write, so a plain
    // acquire finds the waiter holding it even before the waiter knows.
    let waiter_pid = backend_pid(&mut holder);
    let thread = waiting(holder, &name, "next", &mut observer);
    {
        let _stopped = Stopped::new(waiter_pid);
        assert!(release(&mut waiter, &name, "waiter", taken.rvn, false).unwrap());
        let refused = acquire(&mut jumper, &name, "jumper", 10.0, None).unwrap();
        assert_eq!((refused.acquired, refused.owner.as_str()), (false, "next"));
    }
    let (_, next) = join(thread);
    assert!(next.unwrap().acquired);
}

/// Operators see who waits: per lock in `pglock_locks`, in all in
/// `pglock_stats()`, and in `pg_stat_activity` as pglock's own wait event.
#[test]
fn waiting_is_visible_to_operators() {
    let name = unique_name("queue-visible");
    let mut holder = connect();
    let mut observer = connect();
    let stats = |client: &mut Client| -> (i64, i64, f64) {
        let row = client
            .query_one(
                "SELECT waits, handoffs, wait_seconds FROM pglock_stats()",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let (waits, handoffs, seconds) = stats(&mut observer);
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let mut waiter = connect();
    let pid = backend_pid(&mut waiter);
    let thread = waiting(waiter, &name, "waiter", &mut observer);
    assert_eq!(waiters(&mut observer, &name), 1);
    let waiting_now: i64 = observer
        .query_one("SELECT waiting FROM pglock_stats()", &[])
        .unwrap()
        .get(0);
    assert!(waiting_now >= 1);
    let event: (String, String) = {
        let row = observer
            .query_one(
                "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let version: i32 = observer
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap()
        .get(0);
    let expected = if version >= 170_000 {
        "pglock"
    } else {
        "Extension"
    };
    assert_eq!(event, ("Extension".to_owned(), expected.to_owned()));
    thread::sleep(Duration::from_millis(200));
    assert!(release(&mut holder, &name, "holder", held.rvn, false).unwrap());
    let (_, taken) = join(thread);
    assert!(taken.unwrap().acquired);
    let (waits_after, handoffs_after, seconds_after) = stats(&mut observer);
    assert!(waits_after > waits && handoffs_after > handoffs);
    assert!(
        seconds_after - seconds >= 0.2,
        "{seconds} -> {seconds_after}"
    );
    assert_eq!(waiters(&mut observer, &name), 0);
}

/// Another role's waiters queue ahead of a victim, as anyone may for a free
/// name: the victim's wait still ends at its own wait_timeout, and what they
/// take up in the server is one seat per session, whatever they do.
#[test]
fn another_roles_waiters_cannot_hold_a_victim_past_its_wait_timeout() {
    let name = unique_name("queue-hostile");
    let hostile = pglock_role("pglock_queue_hostile");
    let mut holder = connect();
    let mut observer = connect();
    acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let mut hostiles = Vec::new();
    for n in 0..4 {
        let mut client = connect_as(&hostile);
        let pid = backend_pid(&mut client);
        let name = name.clone();
        hostiles.push((
            pid,
            thread::spawn(move || {
                let _ = acquire_wait(
                    &mut client,
                    &name,
                    &format!("h{n}"),
                    LONG_WAIT,
                    Some(LONG_WAIT),
                );
            }),
        ));
        wait_until_asleep(&mut observer, pid);
    }
    let mut victim = connect();
    let started = Instant::now();
    let outcome = wait_as_waiter(&mut victim, &name, Duration::from_millis(500)).unwrap();
    assert!(!outcome.acquired);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let waiting: i64 = observer
        .query_one("SELECT waiting FROM pglock_stats()", &[])
        .unwrap()
        .get(0);
    let sessions: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        waiting <= sessions,
        "{waiting} waiting of {sessions} sessions"
    );
    for (pid, thread) in hostiles {
        let _guard = TerminateOnPanic { pid };
        observer
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        join(thread);
    }
}
