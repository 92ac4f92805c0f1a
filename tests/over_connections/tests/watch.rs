//! `pglock_watch`: a follower learns of a lock's change (a heartbeat, a new
//! holder, a release) as it happens, without polling from the client; at its
//! timeout it shows the lock as it is; it shows data only to the holder's role.

use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{
    acquire, backend_pid, connect, connect_as, heartbeat, join, pglock_role, release, sqlstate,
    unique_name, wait_until_asleep, Client, SqlState,
};

/// A lock as a watch returned it: (owner, rvn, released, data).
type Watched = (String, i64, bool, Option<Vec<u8>>);

/// `pglock_watch(name, rvn, timeout)`: the lock when it returned, if it exists.
fn watch(client: &mut Client, name: &str, rvn: Option<i64>, timeout: &str) -> Option<Watched> {
    client
        .query_opt(
            "SELECT owner, rvn, released, data FROM pglock_watch($1, $2, $3::text::interval)",
            &[&name, &rvn, &timeout],
        )
        .unwrap()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
}

/// A watcher of `name` at `rvn`, asleep in the server, on a thread.
fn watching(name: &str, rvn: Option<i64>) -> thread::JoinHandle<(Option<Watched>, Duration)> {
    let mut watcher = connect();
    let pid = backend_pid(&mut watcher);
    let name = name.to_owned();
    let thread = thread::spawn(move || {
        let started = Instant::now();
        let seen = watch(&mut watcher, &name, rvn, "60 s");
        (seen, started.elapsed())
    });
    wait_until_asleep(&mut connect(), pid);
    thread
}

#[test]
fn a_watch_returns_as_the_lock_changes_with_its_new_state() {
    let name = unique_name("watch");
    let mut holder = connect();
    // Nothing there yet: the watch of "no lock" returns when one exists.
    let created = watching(&name, None);
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let (seen, waited) = join(created);
    assert_eq!(
        seen.map(|(owner, rvn, ..)| (owner, rvn)),
        Some(("holder".into(), held.rvn))
    );
    assert!(waited < Duration::from_secs(60));
    // A heartbeat.
    let renewing = watching(&name, Some(held.rvn));
    let renewed = heartbeat(&mut holder, &name, "holder", held.rvn).unwrap();
    let (seen, _) = join(renewing);
    assert_eq!(
        seen.map(|(_, rvn, released, _)| (rvn, released)),
        Some((renewed, false))
    );
    // A release: no lock any more.
    let releasing = watching(&name, Some(renewed));
    assert!(release(&mut holder, &name, "holder", renewed, false).unwrap());
    let (seen, _) = join(releasing);
    assert_eq!(seen, None);
}

#[test]
fn a_watch_of_a_lock_already_past_its_rvn_returns_at_once_and_one_that_stands_still_at_its_timeout()
{
    let name = unique_name("watch-timeout");
    let mut holder = connect();
    let held = acquire(&mut holder, &name, "holder", 3600.0, None).unwrap();
    let mut watcher = connect();
    let started = Instant::now();
    let seen = watch(&mut watcher, &name, Some(held.rvn - 1), "60 s");
    assert_eq!(seen.map(|(_, rvn, ..)| rvn), Some(held.rvn));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let seen = watch(&mut watcher, &name, Some(held.rvn), "300 ms");
    assert_eq!(
        seen.map(|(_, rvn, ..)| rvn),
        Some(held.rvn),
        "unchanged, at the timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_watch_shows_data_only_to_the_holders_role_and_needs_read_committed() {
    let name = unique_name("watch-data");
    let other = pglock_role("pglock_watch_other");
    let mut holder = connect();
    let rvn: i64 = holder
        .query_one(
            "SELECT rvn FROM pglock_acquire($1, 'holder', '1 hour', data => 'secret')",
            &[&name],
        )
        .unwrap()
        .get(0);
    let mine = watch(&mut connect(), &name, None, "1 s");
    assert_eq!(
        mine.and_then(|(.., data)| data).as_deref(),
        Some(&b"secret"[..])
    );
    let theirs = watch(&mut connect_as(&other), &name, Some(rvn - 1), "1 s");
    assert_eq!(
        theirs.map(|(_, rvn, _, data)| (rvn, data)),
        Some((rvn, None))
    );
    let mut client = connect();
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    let refused = tx.query("SELECT * FROM pglock_watch($1, $2)", &[&name, &rvn]);
    assert_eq!(sqlstate(refused), SqlState::INVALID_TRANSACTION_STATE);
    drop(tx);
    for (statement, expected) in [
        (
            "SELECT * FROM pglock_watch(NULL)",
            SqlState::NULL_VALUE_NOT_ALLOWED,
        ),
        (
            "SELECT * FROM pglock_watch('')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT * FROM pglock_watch('x', 0)",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "SELECT * FROM pglock_watch('x', 1, '-1 s')",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ] {
        assert_eq!(
            sqlstate(client.query(statement, &[])),
            expected,
            "{statement}"
        );
    }
}
