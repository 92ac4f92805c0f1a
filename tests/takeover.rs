//! Lease timing done by real clients: a holder that keeps heartbeating is never
//! taken over; once it goes silent, the lock is taken over after its lease, and the
//! old holder learns it lost the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{acquire, connect, heartbeat, release, sqlstate, unique_name, SqlState};

const LEASE: Duration = Duration::from_millis(600);

/// A contender that follows the protocol: note the holder's RVN, wait the holder's
/// lease, claim with the RVN seen; repeat until it wins or `give_up` passes.
fn contend(name: &str, give_up: Duration) -> Option<(i64, Instant)> {
    let mut client = connect();
    let deadline = Instant::now() + give_up;
    let mut observed = None;
    while Instant::now() < deadline {
        let outcome = acquire(
            &mut client,
            name,
            "contender",
            LEASE.as_secs_f64(),
            observed,
        )
        .unwrap();
        if outcome.acquired {
            return Some((outcome.rvn, Instant::now()));
        }
        observed = Some(outcome.rvn);
        thread::sleep(LEASE);
    }
    None
}

#[test]
fn a_heartbeating_holder_keeps_the_lock_and_a_silent_one_loses_it() {
    let name = unique_name("takeover");
    let mut holder = connect();
    let first = acquire(&mut holder, &name, "holder", LEASE.as_secs_f64(), None).unwrap();
    assert!(first.acquired);

    // Heartbeat every third of the lease for a while, then stop as if crashed.
    let heartbeating = Arc::new(AtomicBool::new(true));
    let beats = {
        let (name, heartbeating) = (name.clone(), heartbeating.clone());
        thread::spawn(move || {
            let mut rvn = first.rvn;
            while heartbeating.load(Ordering::SeqCst) {
                thread::sleep(LEASE / 3);
                rvn = heartbeat(&mut holder, &name, "holder", rvn).expect("the holder heartbeats");
            }
            (holder, rvn, Instant::now())
        })
    };
    assert_eq!(
        contend(&name, LEASE * 5),
        None,
        "no takeover while the holder heartbeats"
    );

    heartbeating.store(false, Ordering::SeqCst);
    let (mut holder, last_rvn, went_silent) = beats.join().unwrap();
    let (new_rvn, taken_at) = contend(&name, LEASE * 10).expect("taken over after the lease");
    assert!(new_rvn > last_rvn);
    assert!(
        taken_at.duration_since(went_silent) >= LEASE,
        "not taken over before the holder's RVN stood still for a lease"
    );

    // The old holder finds out on its next call.
    let error = heartbeat(&mut holder, &name, "holder", last_rvn);
    assert_eq!(sqlstate(error), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert!(!release(&mut holder, &name, "holder", last_rvn, false).unwrap());
    let row = holder
        .query_one("SELECT owner, rvn FROM pglock_get($1)", &[&name])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("contender".into(), new_rvn)
    );
}

#[test]
fn a_dropped_connection_does_not_free_the_lock_before_its_lease() {
    let name = unique_name("dropped");
    let mut holder = connect();
    let first = acquire(&mut holder, &name, "holder", 30.0, None).unwrap();
    drop(holder);
    // Locks are rows, not sessions: the lock outlives its holder's connection ...
    let mut other = connect();
    let seen = acquire(&mut other, &name, "other", 30.0, None).unwrap();
    assert!(!seen.acquired);
    assert_eq!(seen.rvn, first.rvn);
    // ... until someone has watched its RVN stand still and claims it.
    assert!(
        acquire(&mut other, &name, "other", 30.0, Some(seen.rvn))
            .unwrap()
            .acquired
    );
}
