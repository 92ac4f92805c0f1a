//! A long wait must not keep VACUUM from cleaning up.  A statement's snapshot
//! holds back the removal of every row version that dies after it starts; the
//! procedure `pglock_acquire_wait_committing` commits between steps of at most a
//! second, so dead versions older than its current step can go.
//!
//! One test in its own binary: any other test waiting at the same time would hold
//! back VACUUM itself.

use std::thread;
use std::time::Duration;

use pglock_tests::{
    acquire, assert_cancelled_by_request, backend_pid, connect, heartbeat, join, unique_name,
    wait_until_running, Client,
};

const HEARTBEATS: i64 = 200;

/// Dead row versions that VACUUM found but could not remove.
fn dead_after_vacuum(admin: &mut Client) -> i64 {
    admin.batch_execute("VACUUM pglock.locks").unwrap();
    admin
        .query_one(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'pglock.locks'::regclass",
            &[],
        )
        .unwrap()
        .get(0)
}

/// While `statement` waits for a held lock, make dead row versions with
/// heartbeats, let a second pass, VACUUM, and count what it had to leave.
fn dead_left_while_waiting(statement: &'static str) -> i64 {
    let name = unique_name("vacuum");
    let mut holder = connect();
    let mut rvn = acquire(&mut holder, &name, "holder", 3600.0, None)
        .unwrap()
        .rvn;
    let mut admin = connect();
    assert_eq!(dead_after_vacuum(&mut admin), 0, "a clean start");

    let mut waiter = connect();
    let pid = backend_pid(&mut waiter);
    let waiting = {
        let name = name.clone();
        thread::spawn(move || waiter.execute(statement, &[&name]))
    };
    wait_until_running(&mut admin, pid, "pglock_acquire_wait");
    for _ in 0..HEARTBEATS {
        rvn = heartbeat(&mut holder, &name, "holder", rvn).unwrap();
    }
    // The procedure's step now running began after the heartbeats committed.
    thread::sleep(Duration::from_millis(1500));
    let dead = dead_after_vacuum(&mut admin);
    admin
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap();
    assert_cancelled_by_request(join(waiting), statement);
    dead
}

#[test]
fn the_committing_procedure_lets_vacuum_clean_while_a_wait_goes_on() {
    let dead = dead_left_while_waiting("CALL pglock_acquire_wait_committing($1, 'waiter')");
    assert_eq!(
        dead, 0,
        "VACUUM removed every dead version during the procedure's wait"
    );

    // The function waits inside one statement: its snapshot pins every version
    // that died since it started.  This is why the procedure exists, and it shows
    // that the measure above can see a wait holding VACUUM back.
    let dead = dead_left_while_waiting("SELECT FROM pglock_acquire_wait($1, 'waiter')");
    assert!(
        dead >= HEARTBEATS,
        "{dead} dead versions left behind the function's snapshot"
    );
}
