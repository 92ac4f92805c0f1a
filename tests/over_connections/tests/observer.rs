//! The server as an observer: it sees every write of a lock, on a monotonic
//! clock, and takes over a holder it saw stand still for its lease, for any
//! role and without `observed_rvn`; never earlier, not after a restart (it
//! counts from its start), not when its memory of writes is full, not when the
//! wall clock steps; without pglock preloaded it observes nothing.

use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::server::Server;
use pglock_tests::{
    acquire, acquire_wait, connect, connect_as, heartbeat, pglock_role, unique_name,
};

/// `pglock_acquire` of `name` by `owner` on `client` with no observed RVN:
/// whether it took the lock.
fn plain_acquire(client: &mut postgres::Client, name: &str, owner: &str) -> bool {
    client
        .query_one(
            "SELECT acquired FROM pglock_acquire($1, $2)",
            &[&name, &owner],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_plain_acquire_takes_over_a_holder_the_server_saw_fall_silent_for_its_lease() {
    let lease = Duration::from_millis(800);
    let other = pglock_role("pglock_observer_other");
    for (rival, owner) in [(connect(), "rival"), (connect_as(&other), "other-role")] {
        let mut rival = rival;
        let name = unique_name("observed");
        let mut holder = connect();
        let written = Instant::now();
        let held = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None).unwrap();
        assert!(
            !plain_acquire(&mut rival, &name, owner),
            "{owner}: a live holder's lock"
        );
        thread::sleep(lease + Duration::from_millis(100));
        assert!(
            plain_acquire(&mut rival, &name, owner),
            "{owner}: silent for its lease"
        );
        assert!(written.elapsed() >= lease);
        let lost = heartbeat(&mut holder, &name, "holder", held.rvn);
        assert!(lost.is_err(), "the old holder learns it lost the lock");
    }
}

#[test]
fn a_heartbeat_restarts_the_servers_watch() {
    let name = unique_name("observed-alive");
    let lease = Duration::from_millis(600);
    let mut holder = connect();
    let mut rival = connect();
    let mut rvn = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None)
        .unwrap()
        .rvn;
    let until = Instant::now() + lease * 4;
    while Instant::now() < until {
        // Heartbeats every third of the lease; a rival tries in between.
        for _ in 0..4 {
            assert!(
                !plain_acquire(&mut rival, &name, "rival"),
                "a live holder's lock"
            );
            thread::sleep(lease / 12);
        }
        rvn = heartbeat(&mut holder, &name, "holder", rvn).unwrap();
    }
}

#[test]
fn after_a_restart_the_server_counts_from_its_start_and_never_takes_early() {
    let server = Server::create(
        "observer-restart",
        54351,
        &["shared_preload_libraries = 'pglock'"],
    );
    let lease = Duration::from_secs(2);
    let mut client = server.client();
    client
        .query_one("SELECT FROM pglock_acquire('job', 'holder', '2 s')", &[])
        .unwrap();
    thread::sleep(lease); // by its write, the lease has run out ...
    server.restart();
    let restarted = Instant::now();
    let mut client = server.client();
    // ... but the server saw none of that: it waits a lease from its start.
    assert!(!plain_acquire(&mut client, "job", "rival"));
    let taken: bool = client
        .query_one(
            "SELECT acquired FROM pglock_acquire_wait('job', 'rival', wait_timeout => '30 s')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(taken);
    assert!(
        restarted.elapsed() >= lease,
        "taken {:?} after the restart",
        restarted.elapsed()
    );
}

/// The server run under libfaketime, its wall clock (`CLOCK_REALTIME`) stepped
/// hours ahead and back while its monotonic clock runs on: no role takes
/// another's live lock early, and a dead holder's is taken on the monotonic
/// clock, not the wall's.
#[test]
fn a_wall_clock_step_never_lets_any_role_take_a_live_lock() {
    let faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(faketime).exists(),
        "{faketime} is missing: install Debian's libfaketime (the test command does)"
    );
    let offset_file = "/tmp/pglock-observer-faketime.rc";
    std::fs::write(offset_file, "+0\n").unwrap();
    let server = Server::create_with_env(
        "observer-faketime",
        54352,
        &["shared_preload_libraries = 'pglock'"],
        &[
            ("LD_PRELOAD", faketime),
            ("FAKETIME_TIMESTAMP_FILE", offset_file),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let mut admin = server.client();
    admin
        .batch_execute("CREATE ROLE a LOGIN; CREATE ROLE b LOGIN; GRANT pglock_user TO a, b")
        .unwrap();
    let mut a = server.connect_as("a").unwrap();
    let mut b = server.connect_as("b").unwrap();
    let wall = |client: &mut postgres::Client| -> f64 {
        client
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .unwrap()
            .get(0)
    };
    let before = wall(&mut admin);
    let live_rvn: i64 = a
        .query_one("SELECT rvn FROM pglock_acquire('live', 'a', '1 hour')", &[])
        .unwrap()
        .get(0);
    a.query_one("SELECT FROM pglock_acquire('dead', 'a', '1 s')", &[])
        .unwrap();
    for step in ["+2h", "-2h"] {
        std::fs::write(offset_file, format!("{step}\n")).unwrap();
        let now = wall(&mut admin);
        assert!(
            (now - before).abs() > 3000.0,
            "the wall clock stepped {step}: {before} -> {now}"
        );
        for attempt in [
            "SELECT acquired FROM pglock_acquire('live', 'b')".to_owned(),
            format!("SELECT acquired FROM pglock_acquire('live', 'b', observed_rvn => {live_rvn})"),
        ] {
            let taken: bool = b.query_one(&attempt, &[]).unwrap().get(0);
            assert!(!taken, "{step}: {attempt}");
        }
    }
    // Back an hour: a dead holder's 1 s lease still runs out a second after
    // its write, on the monotonic clock.
    std::fs::write(offset_file, "-1h\n").unwrap();
    let taken: bool = b
        .query_one(
            "SELECT acquired FROM pglock_acquire_wait('dead', 'b', wait_timeout => '10 s')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(taken, "a dead holder's lock, taken across roles");
    let _ = std::fs::remove_file(offset_file);
}

/// With room for 256 observations and 600 locks written, the oldest are
/// forgotten (counted), and a lock without an observation counts as unchanged
/// only from the newest write its bucket forgot: never taken before its lease,
/// and each taken once the server can vouch for it again.
#[test]
fn a_full_memory_of_writes_forgets_the_oldest_and_never_takes_early() {
    let server = Server::create(
        "observer-full",
        54353,
        &[
            "shared_preload_libraries = 'pglock'",
            "pglock.observed_locks = 256",
        ],
    );
    let mut client = server.client();
    let lease = Duration::from_secs(1);
    let written = Instant::now();
    client
        .batch_execute(
            "SELECT count(*) FROM generate_series(1, 600) n, pglock_acquire('lock-' || n, 'holder', '1 s')",
        )
        .unwrap();
    let forgotten: i64 = client
        .query_one("SELECT observations_forgotten FROM pglock_stats()", &[])
        .unwrap()
        .get(0);
    assert!(forgotten > 0, "600 locks in 256 records");
    let mut rival = server.client();
    let take_what_it_can = |rival: &mut postgres::Client| -> i64 {
        rival
            .query_one(
                // Those it took in an earlier round (for an hour) it is refused.
                "SELECT count(*) FILTER (WHERE a.acquired) FROM generate_series(1, 600) n, \
                        pglock_acquire('lock-' || n, 'rival', '1 hour') a",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let early = take_what_it_can(&mut rival);
    assert!(
        written.elapsed() < lease,
        "the check ran within the lease: {:?}",
        written.elapsed()
    );
    assert_eq!(early, 0, "no lock taken before its lease");
    // Each round takes what the server vouches for; its own takeovers are new
    // writes that it may forget in turn, so some wait for the next round.
    let mut taken = 0;
    for round in 1..=6 {
        thread::sleep(lease + Duration::from_millis(100));
        taken += take_what_it_can(&mut rival);
        if taken == 600 {
            println!("all 600 taken in {round} rounds");
            break;
        }
    }
    assert_eq!(
        taken, 600,
        "every lock, once the server saw its lease run out"
    );
}

/// Without pglock in `shared_preload_libraries`: everything works, waits poll,
/// and only a caller's own watch (within its role) takes a lock over.
#[test]
fn without_preloading_waits_poll_and_the_server_observes_nothing() {
    let server = Server::create("observer-plain", 54354, &[]);
    let mut admin = server.client();
    admin
        .batch_execute("CREATE ROLE b LOGIN; GRANT pglock_user TO b")
        .unwrap();
    let preloaded: bool = admin
        .query_one("SELECT pglock_preloaded()", &[])
        .unwrap()
        .get(0);
    assert!(!preloaded);
    let stats = admin.query_one("SELECT * FROM pglock_stats()", &[]);
    assert_eq!(
        stats.unwrap_err().code(),
        Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );
    let rvn: i64 = admin
        .query_one(
            "SELECT rvn FROM pglock_acquire('job', 'holder', '500 ms')",
            &[],
        )
        .unwrap()
        .get(0);
    thread::sleep(Duration::from_millis(700));
    let mut other_role = server.connect_as("b").unwrap();
    let presented =
        format!("SELECT acquired FROM pglock_acquire('job', 'b', observed_rvn => {rvn})");
    let taken: bool = other_role.query_one(&presented, &[]).unwrap().get(0);
    assert!(
        !taken,
        "another role's lock: nothing observed, so never taken over"
    );
    assert!(!plain_acquire(&mut admin, "job", "rival"));
    let taken = acquire_wait(
        &mut admin,
        "job",
        "rival",
        Duration::from_secs(5),
        Some(Duration::from_secs(10)),
    )
    .unwrap();
    assert!(
        taken.acquired && taken.rvn > rvn,
        "within the role, its own watch takes it"
    );
    let waiters: i32 = admin
        .query_one("SELECT waiters FROM pglock_locks WHERE name = 'job'", &[])
        .unwrap()
        .get(0);
    assert_eq!(waiters, 0);
}
