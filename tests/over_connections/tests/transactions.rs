//! pglock calls inside explicit transactions: a write holds its lock until the
//! transaction ends; others wait for it, then see what it committed.  A refused
//! acquire only reads: it takes no transaction id.  A call with bad arguments
//! does not wait for the name at all, and a call that fails changes nothing.

use std::sync::mpsc;
use std::thread;

use postgres::types::ToSql;

use pglock_tests::{
    acquire, backend_pid, connect, connect_as, join, pglock_role, release, sqlstate, unique_name,
    wait_until_blocked_by, Client, SqlState, WAIT_LIMIT,
};

#[test]
fn an_uncommitted_acquire_makes_others_wait_then_see_its_outcome() {
    for commit in [true, false] {
        let name = unique_name("xact");
        let mut first = connect();
        let first_pid = backend_pid(&mut first);
        let mut tx = first.transaction().unwrap();
        let taken = tx
            .query_one("SELECT acquired FROM pglock_acquire($1, 'first')", &[&name])
            .unwrap();
        assert!(taken.get::<_, bool>(0));

        let (sender, outcome) = mpsc::channel();
        let mut second = connect();
        let second_pid = backend_pid(&mut second);
        let contender = {
            let name = name.clone();
            thread::spawn(move || {
                sender
                    .send(acquire(&mut second, &name, "second", 30.0, None).unwrap())
                    .unwrap();
            })
        };
        // The server shows the second caller waiting for a lock the first
        // transaction holds, and its call has not returned.
        wait_until_blocked_by(&mut connect(), second_pid, first_pid);
        assert!(
            outcome.try_recv().is_err(),
            "the second caller waits for the first transaction"
        );
        if commit {
            tx.commit().unwrap()
        } else {
            tx.rollback().unwrap()
        }
        let seen = outcome.recv_timeout(WAIT_LIMIT);
        join(contender);
        let seen = seen.expect("the wait ends with the first transaction");
        if commit {
            assert_eq!((seen.acquired, seen.owner.as_str()), (false, "first"));
        } else {
            assert_eq!((seen.acquired, seen.owner.as_str()), (true, "second"));
        }
    }
}

#[test]
fn a_refused_acquire_takes_no_transaction_id() {
    let name = unique_name("no-xid");
    let mut holder = connect();
    assert!(
        acquire(&mut holder, &name, "holder", 30.0, None)
            .unwrap()
            .acquired
    );
    let mut other = connect();
    let mut tx = other.transaction().unwrap();
    let refused = tx
        .query_one("SELECT acquired FROM pglock_acquire($1, 'other')", &[&name])
        .unwrap();
    assert!(!refused.get::<_, bool>(0));
    let xid = tx
        .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
        .unwrap();
    assert_eq!(xid.get::<_, Option<String>>(0), None);
    tx.commit().unwrap();
}

/// The lock `name` as another session reads it, every column.
fn lock_row(observer: &mut Client, name: &str) -> String {
    observer
        .query_one(
            "SELECT format('%s', l) FROM pglock.locks l WHERE name = $1",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// A call with a bad argument raises before it reads or locks anything, so it
/// does not wait for a transaction that holds the lock's name; and a call that
/// raises changes nothing, as another session sees the lock afterwards (the
/// committing procedure commits as it goes, so this is not a given).
#[test]
fn failing_calls_raise_before_waiting_for_the_name_and_change_nothing() {
    let name = unique_name("failing");
    let mut holder = connect();
    let held = acquire(&mut holder, &name, "holder", 60.0, None).unwrap();
    let mut observer = connect();
    let mut caller = connect_as(&pglock_role("pglock_it_bob"));
    // Were a call to take the name's lock first, it would fail with 55P03.
    caller.batch_execute("SET lock_timeout = '2s'").unwrap();
    let check = |caller: &mut Client,
                 observer: &mut Client,
                 statement: &str,
                 rvn: i64,
                 expected: SqlState| {
        let before = lock_row(observer, &name);
        let params: Vec<&(dyn ToSql + Sync)> = if statement.contains("$2") {
            vec![&name, &rvn]
        } else {
            vec![&name]
        };
        assert_eq!(
            sqlstate(caller.execute(statement, &params)),
            expected,
            "{statement}"
        );
        assert_eq!(
            lock_row(observer, &name),
            before,
            "{statement} changed the lock"
        );
    };

    // The holder renews the lock in a transaction it keeps open: its name is busy.
    let mut tx = holder.transaction().unwrap();
    let renewed: i64 = tx
        .query_one(
            "SELECT pglock_heartbeat($1, 'holder', $2)",
            &[&name, &held.rvn],
        )
        .unwrap()
        .get(0);
    for (statement, expected) in [
        (
            "SELECT pglock_heartbeat($1, 'holder', $2, lease => '0')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT pglock_heartbeat($1, '', $2)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT pglock_heartbeat($1, 'holder', $2, replace_data => NULL)",
            SqlState::NULL_VALUE_NOT_ALLOWED,
        ),
        (
            "SELECT pglock_release($1, 'holder', -1)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT pglock_release($1, 'holder', $2, keep => NULL)",
            SqlState::NULL_VALUE_NOT_ALLOWED,
        ),
        (
            "SELECT pglock_release($1, 'holder', $2, data => 'lost')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT pglock_release($1, 'holder', $2, true, repeat('x', 1048577)::bytea)",
            SqlState::PROGRAM_LIMIT_EXCEEDED,
        ),
        (
            "SELECT * FROM pglock_acquire($1, 'caller', observed_rvn => 0)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT * FROM pglock_acquire($1, repeat('o', 256))",
            SqlState::STRING_DATA_RIGHT_TRUNCATION,
        ),
        (
            "SELECT * FROM pglock_acquire_wait($1, 'caller', wait_timeout => '-1 s')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "CALL pglock_acquire_wait_committing($1, 'caller', '2 days', 'data')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ] {
        check(&mut caller, &mut observer, statement, held.rvn, expected);
    }
    tx.commit().unwrap();

    // Calls that read the lock and find they may not touch it, and the procedure,
    // which commits as it goes, with the name free.
    for (statement, rvn, expected) in [
        (
            "CALL pglock_acquire_wait_committing($1, 'caller', wait_timeout => '-1 s')",
            renewed,
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT pglock_heartbeat($1, 'holder', $2, 'data')",
            held.rvn,
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        ),
        (
            "SELECT pglock_heartbeat($1, 'holder', $2, 'data')",
            renewed,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
        (
            "SELECT pglock_release($1, 'holder', $2, keep => true, data => 'data')",
            renewed,
            SqlState::INSUFFICIENT_PRIVILEGE,
        ),
    ] {
        check(&mut caller, &mut observer, statement, rvn, expected);
    }
    assert!(release(&mut holder, &name, "holder", renewed, false).unwrap());
}
