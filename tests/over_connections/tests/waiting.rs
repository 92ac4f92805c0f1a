//! `pglock_acquire_wait` and `pglock_acquire_wait_committing`: the server runs the
//! caller's half of the protocol.  It takes over a silent holder only after the
//! holder's RVN stood still for its lease, notices a release at once, gives up at
//! `wait_timeout`, answers cancel and timeouts, and blocks nobody while it waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{
    acquire, acquire_wait, assert_cancelled_by_request, backend_pid, connect, heartbeat, join,
    join_all, release, sqlstate, unique_name, wait_as_waiter, wait_until_running, Rendezvous,
    SqlState, TerminateOnPanic,
};

/// A wait_timeout that only a wait gone wrong reaches.
const LONG_WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_silent_holder_is_taken_over_only_after_its_lease() {
    let name = unique_name("wait-takeover");
    let lease = Duration::from_millis(800);
    let mut holder = connect();
    let sent = Instant::now();
    let held = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None).unwrap();
    let mut waiter = connect();
    // Waiting half the lease is not enough ...
    let early = acquire_wait(&mut waiter, &name, "waiter", lease, Some(lease / 2)).unwrap();
    assert_eq!(
        (early.acquired, early.owner.as_str(), early.rvn),
        (false, "holder", held.rvn)
    );
    // ... waiting on takes the lock over, a full lease after the holder's write
    // (which the server saw; without it, a lease after this wait first saw it).
    let won = acquire_wait(&mut waiter, &name, "waiter", lease, Some(LONG_WAIT)).unwrap();
    assert!(won.acquired && won.owner == "waiter" && won.rvn > held.rvn);
    assert!(
        sent.elapsed() >= lease,
        "taken over {:?} after the holder's write, before its lease {lease:?}",
        sent.elapsed()
    );
    let lost = heartbeat(&mut holder, &name, "holder", held.rvn);
    assert_eq!(sqlstate(lost), SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
}

#[test]
fn a_heartbeating_holder_is_never_taken_over_and_never_blocked() {
    let name = unique_name("wait-heartbeats");
    // Heartbeats every tenth of the lease: on a loaded machine a heartbeat may come
    // late by most of a lease and the holder still keeps it.
    let lease = Duration::from_secs(2);
    let period = lease / 10;
    let mut holder = connect();
    let held = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None).unwrap();
    let wait = lease * 2;
    let waiter = {
        let name = name.clone();
        thread::spawn(move || acquire_wait(&mut connect(), &name, "waiter", lease, Some(wait)))
    };
    // Heartbeat through the whole wait: none may block on the waiter, or the lease
    // would run out and the waiter take the lock.
    let mut rvn = held.rvn;
    let until = Instant::now() + wait + lease;
    let mut beats = 0;
    while Instant::now() < until {
        thread::sleep(period);
        rvn = heartbeat(&mut holder, &name, "holder", rvn).expect("heartbeats go through");
        beats += 1;
    }
    let outcome = join(waiter).unwrap();
    assert!(!outcome.acquired, "the waiter gave up at wait_timeout");
    assert_eq!(outcome.owner, "holder");
    assert!(beats >= 10, "{beats} heartbeats");
    assert!(release(&mut holder, &name, "holder", rvn, false).unwrap());
}

#[test]
fn a_release_is_noticed_long_before_the_lease() {
    let name = unique_name("wait-release");
    let mut holder = connect();
    // An hour's lease: only noticing the release can end this wait in time.
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let mut waiter = connect();
    let pid = backend_pid(&mut waiter);
    let waiting = {
        let name = name.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let outcome = acquire_wait(&mut waiter, &name, "waiter", LONG_WAIT, Some(LONG_WAIT));
            (outcome, started.elapsed())
        })
    };
    wait_until_running(&mut connect(), pid, "pglock_acquire_wait");
    thread::sleep(Duration::from_millis(200));
    assert!(release(&mut holder, &name, "holder", held.rvn, false).unwrap());
    let (outcome, waited) = join(waiting);
    let outcome = outcome.unwrap();
    assert!(
        outcome.acquired && outcome.owner == "waiter",
        "the release was not noticed in {waited:?}: {outcome:?}"
    );
}

#[test]
fn many_waiters_each_get_the_lock_one_at_a_time() {
    const WAITERS: usize = 24;
    let name = unique_name("wait-many");
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let start = Rendezvous::new(WAITERS);
    let threads: Vec<_> = (0..WAITERS)
        .map(|n| {
            let (name, inside, most_inside, start) = (
                name.clone(),
                inside.clone(),
                most_inside.clone(),
                start.clone(),
            );
            thread::spawn(move || {
                let _start = start.member();
                let mut client = connect();
                let owner = format!("waiter-{n}");
                start.wait();
                let held = acquire_wait(
                    &mut client,
                    &name,
                    &owner,
                    Duration::from_secs(30),
                    Some(LONG_WAIT),
                )
                .unwrap();
                assert!(held.acquired, "{owner} waited {LONG_WAIT:?} in vain");
                let now_inside = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most_inside.fetch_max(now_inside, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(5));
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(release(&mut client, &name, &owner, held.rvn, false).unwrap());
                held.rvn
            })
        })
        .collect();
    let mut rvns: Vec<i64> = join_all("waiters", threads, LONG_WAIT * 2);
    assert_eq!(most_inside.load(Ordering::SeqCst), 1, "two holders at once");
    rvns.sort();
    rvns.dedup();
    assert_eq!(rvns.len(), WAITERS, "every waiter got its own RVN");
}

#[test]
fn cancel_timeouts_and_termination_end_a_wait_at_once_and_change_nothing() {
    let name = unique_name("wait-cancel");
    let mut holder = connect();
    acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let before = holder
        .query_one("SELECT rvn, owner FROM pglock_get($1)", &[&name])
        .unwrap();
    let (rvn_before, owner_before): (i64, String) = (before.get(0), before.get(1));
    let mut admin = connect();

    // statement_timeout
    let mut waiter = connect();
    waiter
        .batch_execute("SET statement_timeout = '200ms'")
        .unwrap();
    let outcome = acquire_wait(&mut waiter, &name, "waiter", Duration::from_secs(5), None);
    assert_eq!(sqlstate(outcome), SqlState::QUERY_CANCELED);
    waiter.batch_execute("RESET statement_timeout").unwrap();

    // pg_cancel_backend, from another session, for the function and the procedure.
    // Their wait_timeout only ends a wait the cancel missed.
    for statement in [
        "SELECT * FROM pglock_acquire_wait($1, 'waiter', wait_timeout => '60 s')",
        "CALL pglock_acquire_wait_committing($1, 'waiter', wait_timeout => '60 s')",
    ] {
        let pid = backend_pid(&mut waiter);
        let canceller = thread::spawn(move || {
            let _guard = TerminateOnPanic { pid };
            let mut admin = connect();
            wait_until_running(&mut admin, pid, "pglock_acquire_wait");
            admin
                .execute("SELECT pg_cancel_backend($1)", &[&pid])
                .unwrap();
        });
        let outcome = waiter.execute(statement, &[&name]);
        join(canceller);
        assert_cancelled_by_request(outcome, statement);
    }

    // pg_terminate_backend ends the session.
    let pid = backend_pid(&mut waiter);
    let terminator = thread::spawn(move || {
        let _guard = TerminateOnPanic { pid };
        let mut admin = connect();
        wait_until_running(&mut admin, pid, "pglock_acquire_wait");
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
    });
    let outcome = wait_as_waiter(&mut waiter, &name, LONG_WAIT);
    join(terminator);
    // The client reads the backend's FATAL 57P01, or finds the connection
    // closed first; any other answer is not the termination.
    let error = outcome.expect_err("the wait ends with the session");
    assert!(
        error.code() == Some(&SqlState::ADMIN_SHUTDOWN)
            || (error.code().is_none() && error.is_closed()),
        "terminated: {error:?}"
    );
    assert!(waiter.is_closed() || waiter.simple_query("SELECT 1").is_err());

    let after = admin
        .query_one("SELECT rvn, owner FROM pglock_get($1)", &[&name])
        .unwrap();
    assert_eq!(
        (after.get::<_, i64>(0), after.get::<_, String>(1)),
        (rvn_before, owner_before)
    );
}

#[test]
fn the_committing_procedure_takes_over_returns_its_rvn_and_times_out() {
    let name = unique_name("wait-procedure");
    let lease = Duration::from_millis(1500); // longer than one step of the procedure
    let mut holder = connect();
    let sent = Instant::now();
    let held = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None).unwrap();

    let mut waiter = connect();
    let row = waiter
        .query_one(
            "CALL pglock_acquire_wait_committing($1, 'waiter', wait_timeout => '200 ms')",
            &[&name],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>("acquired"), row.get::<_, i64>("rvn")),
        (false, held.rvn)
    );

    let row = waiter
        .query_one(
            "CALL pglock_acquire_wait_committing($1, 'waiter', '1 minute')",
            &[&name],
        )
        .unwrap();
    assert!(row.get::<_, bool>("acquired"));
    let rvn: i64 = row.get("rvn");
    assert!(
        sent.elapsed() >= lease,
        "taken over {:?} after the holder's write, before its lease",
        sent.elapsed()
    );
    let now = waiter
        .query_one("SELECT owner, rvn FROM pglock_get($1)", &[&name])
        .unwrap();
    assert_eq!(
        (now.get::<_, String>(0), now.get::<_, i64>(1)),
        ("waiter".to_owned(), rvn)
    );

    // From PL/pgSQL the outputs land in variables.
    waiter
        .batch_execute(&format!("SET pglock_test.name = '{name}'"))
        .unwrap();
    waiter
        .batch_execute(
            "DO $$
             DECLARE got boolean; my_rvn bigint;
             BEGIN
                 CALL pglock_acquire_wait_committing(current_setting('pglock_test.name'), 'other',
                      wait_timeout => '100 ms', acquired => got, rvn => my_rvn);
                 PERFORM set_config('pglock_test.result', format('%s %s', got, my_rvn), false);
             END $$",
        )
        .unwrap();
    let result: String = waiter
        .query_one("SELECT current_setting('pglock_test.result')", &[])
        .unwrap()
        .get(0);
    assert_eq!(result, format!("f {rvn}"));

    // Inside a transaction block it cannot commit: it says so at once.
    let mut tx = waiter.transaction().unwrap();
    let inside = tx.execute("CALL pglock_acquire_wait_committing($1, 'other')", &[&name]);
    assert_eq!(sqlstate(inside), SqlState::INVALID_TRANSACTION_TERMINATION);
}

#[test]
fn bad_arguments_are_refused_before_waiting() {
    let name = unique_name("wait-args");
    let mut client = connect();
    for (statement, expected) in [
        (
            "SELECT * FROM pglock_acquire_wait(NULL, 'a')",
            SqlState::NULL_VALUE_NOT_ALLOWED,
        ),
        (
            "SELECT * FROM pglock_acquire_wait($1, '')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT * FROM pglock_acquire_wait($1, 'a', '0')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT * FROM pglock_acquire_wait($1, 'a', wait_timeout => '-1 s')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "CALL pglock_acquire_wait_committing($1, NULL)",
            SqlState::NULL_VALUE_NOT_ALLOWED,
        ),
        (
            "CALL pglock_acquire_wait_committing($1, 'a', wait_timeout => '-1 s')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ] {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = if statement.contains("$1") {
            vec![&name]
        } else {
            vec![]
        };
        assert_eq!(
            sqlstate(client.execute(statement, &params)),
            expected,
            "{statement}"
        );
    }
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    let attempt = tx.execute("SELECT * FROM pglock_acquire_wait($1, 'a')", &[&name]);
    assert_eq!(sqlstate(attempt), SqlState::INVALID_TRANSACTION_STATE);
    drop(tx);
    let exists = client
        .query_opt("SELECT FROM pglock_get($1)", &[&name])
        .unwrap();
    assert!(exists.is_none(), "nothing was written");
}
