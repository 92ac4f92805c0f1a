//! Lease timing with real connections: a holder that keeps heartbeating is never
//! taken over; once it goes silent (it stops heartbeating, or its connection is
//! dropped), a contender that tries before the holder's lease has passed is
//! refused, one that waits takes the lock over, and the old holder learns it lost
//! the lock.
//!
//! The server stores leases but never times them: callers do.  So the contenders
//! here are `pglock_acquire_wait`, the caller's half of the protocol run in the
//! server, and the timing asserted is pglock's, not this test's own sleeps: a wait
//! shorter than the holder's lease ends refused with the RVN it saw, and a
//! takeover comes no sooner than a full lease after the holder went silent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{
    acquire, acquire_wait, connect, heartbeat, join, release, sqlstate, unique_name, Acquire,
    Client, SqlState,
};

const LEASE: Duration = Duration::from_millis(1500);
/// Heartbeats come every tenth of the lease: a heartbeat thread delayed by most
/// of a lease on a loaded machine still keeps the lock.
const HEARTBEAT_PERIOD: Duration = Duration::from_millis(150);

/// Try for half the holder's lease: must be refused, showing the holder at `rvn`.
fn try_early(contender: &mut Client, name: &str, rvn: i64) {
    let early = acquire_wait(contender, name, "contender", LEASE, Some(LEASE / 2)).unwrap();
    assert_eq!(
        (early.acquired, early.owner.as_str(), early.rvn),
        (false, "holder", rvn),
        "a wait of half the holder's lease is refused"
    );
}

/// Wait as long as it takes (up to ten leases): must take the lock over, and no
/// sooner than a lease after `silent_since`, when the holder sent its last write.
/// (The server, which saw that write, may take it over a lease after it, sooner
/// than a lease after this wait began.)
fn take_over_patiently(
    contender: &mut Client,
    name: &str,
    last_rvn: i64,
    silent_since: Instant,
) -> Acquire {
    let taken = acquire_wait(contender, name, "contender", LEASE, Some(LEASE * 10)).unwrap();
    assert!(
        taken.acquired && taken.owner == "contender" && taken.rvn > last_rvn,
        "taken over within ten leases: {taken:?}"
    );
    assert!(
        silent_since.elapsed() >= LEASE,
        "taken over {:?} after the holder's last write, before its lease {LEASE:?}",
        silent_since.elapsed()
    );
    taken
}

#[test]
fn a_heartbeating_holder_keeps_the_lock_and_a_silent_one_loses_it() {
    let name = unique_name("takeover");
    let mut holder = connect();
    let first = acquire(&mut holder, &name, "holder", LEASE.as_secs_f64(), None).unwrap();
    assert!(first.acquired);

    // Heartbeat for a while, then stop as if crashed.
    let heartbeating = Arc::new(AtomicBool::new(true));
    let beats = {
        let (name, heartbeating) = (name.clone(), heartbeating.clone());
        thread::spawn(move || {
            let mut rvn = first.rvn;
            let mut sent = Instant::now();
            while heartbeating.load(Ordering::SeqCst) {
                thread::sleep(HEARTBEAT_PERIOD);
                sent = Instant::now();
                rvn = heartbeat(&mut holder, &name, "holder", rvn).expect("the holder heartbeats");
            }
            (holder, rvn, sent)
        })
    };
    let mut contender = connect();
    // Waiting twice the lease gets nothing while the holder heartbeats ...
    let refused = acquire_wait(&mut contender, &name, "contender", LEASE, Some(LEASE * 2)).unwrap();
    assert!(
        !refused.acquired && refused.owner == "holder" && refused.rvn > first.rvn,
        "no takeover while the holder heartbeats: {refused:?}"
    );
    // ... and a claim with an RVN the holder has since renewed is refused.
    let stale = acquire(
        &mut contender,
        &name,
        "contender",
        LEASE.as_secs_f64(),
        Some(first.rvn),
    )
    .unwrap();
    assert!(!stale.acquired && stale.owner == "holder");

    heartbeating.store(false, Ordering::SeqCst);
    let (mut holder, last_rvn, last_sent) = join(beats);
    try_early(&mut contender, &name, last_rvn);
    let taken = take_over_patiently(&mut contender, &name, last_rvn, last_sent);

    // The old holder finds out on its next call.
    let error = heartbeat(&mut holder, &name, "holder", last_rvn);
    assert_eq!(sqlstate(error), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert!(!release(&mut holder, &name, "holder", last_rvn, false).unwrap());
    let row = holder
        .query_one("SELECT owner, rvn FROM pglock_get($1)", &[&name])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("contender".into(), taken.rvn)
    );
}

#[test]
fn a_dropped_connection_does_not_free_the_lock_before_its_lease() {
    let name = unique_name("dropped");
    let mut holder = connect();
    let sent = Instant::now();
    let first = acquire(&mut holder, &name, "holder", LEASE.as_secs_f64(), None).unwrap();
    drop(holder);
    // Locks are rows, not sessions: the lock outlives its holder's connection ...
    let mut contender = connect();
    let seen = acquire(&mut contender, &name, "contender", 30.0, None).unwrap();
    assert_eq!((seen.acquired, seen.rvn), (false, first.rvn));
    try_early(&mut contender, &name, first.rvn);
    // ... until its RVN has stood still for its lease.
    take_over_patiently(&mut contender, &name, first.rvn, sent);
}
