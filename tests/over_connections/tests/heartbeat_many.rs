//! pglock_heartbeat_many over real connections: open transactions renewing
//! thousands of locks each hold no name lock (together they would not fit in
//! the server's lock table otherwise); overlapping calls in opposite orders never
//! deadlock and renew each lock once; a worker renewing while another owner takes
//! locks over renews exactly the locks it still holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{
    acquire, backend_pid, connect, heartbeat, join_all, name_locks_held, unique_name, Client,
    Rendezvous, WAIT_LIMIT,
};

/// Acquire `count` locks named `<owner>-<n>` for `owner`; their names and RVNs.
fn acquire_many(client: &mut Client, owner: &str, count: i32) -> (Vec<String>, Vec<i64>) {
    let mut names = Vec::new();
    let mut rvns = Vec::new();
    for start in (0..count).step_by(1000) {
        let end = (start + 999).min(count - 1);
        for row in client
            .query(
                "SELECT $1 || '-' || n, a.rvn FROM generate_series($2::int, $3::int) n, \
                        pglock_acquire($1 || '-' || n, $1, '1 hour') a WHERE a.acquired",
                &[&owner, &start, &end],
            )
            .unwrap()
        {
            names.push(row.get(0));
            rvns.push(row.get(1));
        }
    }
    assert_eq!(names.len(), count as usize);
    (names, rvns)
}

/// `(name, rvn, renewed)` rows of one call, in the order returned.
fn renew(
    client: &mut impl postgres::GenericClient,
    owner: &str,
    names: &[String],
    rvns: &[i64],
) -> Vec<(String, Option<i64>, bool)> {
    client
        .query(
            "SELECT name, rvn, renewed FROM pglock_heartbeat_many($1, $2, $3)",
            &[&owner, &names, &rvns],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Three open transactions renew 10,000 locks each: 30,000 name locks held to
/// the end would not fit in the server's lock table (64 per connection slot).
#[test]
fn open_transactions_renewing_ten_thousand_locks_each_hold_no_name_lock() {
    let mut observer = connect();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let owner = unique_name("bulk");
        let mut client = connect();
        let (names, rvns) = acquire_many(&mut client, &owner, 10_000);
        sessions.push((client, owner, names, rvns));
    }
    for (client, owner, names, rvns) in &mut sessions {
        client.batch_execute("BEGIN").unwrap();
        let rows = renew(client, owner, names, rvns);
        assert_eq!(rows.len(), 10_000);
        for ((name, rvn, renewed), (given, old)) in rows.iter().zip(names.iter().zip(rvns.iter())) {
            assert_eq!(name, given, "rows come in the order given");
            assert!(
                *renewed && rvn.is_some_and(|rvn| rvn > *old),
                "{name}: {rvn:?}"
            );
        }
        let pid = backend_pid(client);
        assert_eq!(name_locks_held(&mut observer, pid), 0);
    }
    for (client, owner, ..) in &mut sessions {
        client.batch_execute("COMMIT").unwrap();
        client
            .query_one("SELECT pglock_release_all($1)", &[owner])
            .unwrap();
    }
}

const LOCKS: usize = 200;
/// Each lock renewed in a round: by which caller, at which RVN.
type Renewals = BTreeMap<String, (usize, i64)>;
const CALLERS: usize = 4;
const ROUNDS: usize = 8;

/// Callers renew the same locks at once, each giving them in another order
/// (forward, backward, odds then evens, shuffled), in transactions that stay
/// open a moment: their row locks overlap.  Taken in the input order they would
/// deadlock; taken in key order nobody waits in a cycle.  Each round every lock
/// is renewed by exactly one caller, and its RVN is the one that caller got.
#[test]
fn overlapping_calls_in_different_orders_never_deadlock_and_renew_each_lock_once() {
    let owner = unique_name("overlap");
    let (names, _) = acquire_many(&mut connect(), &owner, LOCKS as i32);
    let orders: Vec<Vec<usize>> = vec![
        (0..LOCKS).collect(),
        (0..LOCKS).rev().collect(),
        (0..LOCKS)
            .filter(|n| n % 2 == 1)
            .chain((0..LOCKS).filter(|n| n % 2 == 0))
            .collect(),
        (0..LOCKS).map(|n| (n * 73 + 11) % LOCKS).collect(),
    ];
    let read = Rendezvous::new(CALLERS);
    let renewed = Rendezvous::new(CALLERS);
    let round_results: Arc<Mutex<Vec<Renewals>>> =
        Arc::new(Mutex::new(vec![BTreeMap::new(); ROUNDS]));
    let callers: Vec<_> = orders
        .into_iter()
        .enumerate()
        .map(|(caller, order)| {
            let (read, renewed, results) = (read.clone(), renewed.clone(), round_results.clone());
            let (owner, names) = (owner.clone(), names.clone());
            thread::spawn(move || {
                let (_read, _renewed) = (read.member(), renewed.member());
                let mut client = connect();
                for round in 0..ROUNDS {
                    let current: BTreeMap<String, i64> = client
                        .query(
                            "SELECT name, rvn FROM pglock_locks WHERE owner = $1",
                            &[&owner],
                        )
                        .unwrap()
                        .iter()
                        .map(|row| (row.get(0), row.get(1)))
                        .collect();
                    read.wait();
                    let mine: Vec<String> = order.iter().map(|&n| names[n].clone()).collect();
                    let rvns: Vec<i64> = mine.iter().map(|name| current[name]).collect();
                    let mut tx = client.transaction().unwrap();
                    let rows = renew(&mut tx, &owner, &mine, &rvns);
                    tx.batch_execute("SELECT pg_sleep(0.02)").unwrap();
                    tx.commit().unwrap();
                    {
                        let mut results = results.lock().unwrap();
                        for (name, rvn, renewed) in rows {
                            if renewed {
                                let earlier =
                                    results[round].insert(name.clone(), (caller, rvn.unwrap()));
                                assert_eq!(earlier, None, "round {round}: {name} renewed twice");
                            }
                        }
                    }
                    renewed.wait();
                }
            })
        })
        .collect();
    join_all("overlapping callers", callers, WAIT_LIMIT * 4);
    let results = round_results.lock().unwrap();
    for (round, renewals) in results.iter().enumerate() {
        assert_eq!(
            renewals.len(),
            LOCKS,
            "round {round}: every lock renewed once"
        );
    }
    let mut observer = connect();
    for (name, (_, rvn)) in &results[ROUNDS - 1] {
        let current: i64 = observer
            .query_one("SELECT rvn FROM pglock_get($1)", &[name])
            .unwrap()
            .get(0);
        assert_eq!(current, *rvn, "{name}");
    }
    let renewers: BTreeSet<usize> = results
        .iter()
        .flat_map(|renewals| renewals.values().map(|(caller, _)| *caller))
        .collect();
    assert!(renewers.len() > 1, "the calls did overlap: {renewers:?}");
}

/// A worker renews its 100 locks every few milliseconds while a thief, of the
/// same role, takes some over with the RVN it just read.  The worker learns each
/// loss from a row with `renewed = false` (never an error), stops renewing that
/// lock, and in the end holds exactly the locks the thief did not take, each at
/// the RVN its last renewal returned.
#[test]
fn a_worker_renewing_while_locks_are_taken_over_renews_exactly_those_it_holds() {
    let owner = unique_name("worker");
    let mut worker = connect();
    let (names, rvns) = acquire_many(&mut worker, &owner, 100);
    let stop = Arc::new(Mutex::new(false));
    let thief = thread::spawn({
        let (names, stop) = (names.clone(), stop.clone());
        move || {
            let mut client = connect();
            let mut stolen = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut n = 0;
            while Instant::now() < deadline {
                let name = &names[(n * 37) % names.len()];
                n += 1;
                let seen: i64 = client
                    .query_one("SELECT rvn FROM pglock_get($1)", &[name])
                    .unwrap()
                    .get(0);
                if stolen.contains_key(name) {
                    continue;
                }
                let taken = acquire(&mut client, name, "thief", 60.0, Some(seen)).unwrap();
                if taken.acquired {
                    stolen.insert(name.clone(), taken.rvn);
                }
                thread::sleep(Duration::from_millis(20));
            }
            *stop.lock().unwrap() = true;
            stolen
        }
    });
    let mut held: BTreeMap<String, i64> = names.iter().cloned().zip(rvns).collect();
    let mut losses = 0;
    // Renew until the thief stops, then once more to learn of its last takeovers.
    let mut last_pass = false;
    while !last_pass {
        last_pass = *stop.lock().unwrap();
        let (names, rvns): (Vec<String>, Vec<i64>) =
            held.iter().map(|(name, rvn)| (name.clone(), *rvn)).unzip();
        for (name, rvn, renewed) in renew(&mut worker, &owner, &names, &rvns) {
            match (renewed, rvn) {
                (true, Some(rvn)) => {
                    held.insert(name, rvn);
                }
                (false, None) => {
                    held.remove(&name);
                    losses += 1;
                }
                other => panic!("{name}: renewed and rvn disagree: {other:?}"),
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    let stolen = pglock_tests::join(thief);
    assert!(!stolen.is_empty(), "the thief took some locks");
    assert_eq!(losses, stolen.len(), "each loss learnt once");
    let mut observer = connect();
    for name in &names {
        let (current_owner, rvn): (String, i64) = {
            let row = observer
                .query_one("SELECT owner, rvn FROM pglock_get($1)", &[name])
                .unwrap();
            (row.get(0), row.get(1))
        };
        match (held.get(name), stolen.get(name)) {
            (Some(mine), None) => {
                assert_eq!((current_owner.as_str(), rvn), (owner.as_str(), *mine))
            }
            (None, Some(theirs)) => assert_eq!((current_owner.as_str(), rvn), ("thief", *theirs)),
            other => panic!("{name} held by both or neither: {other:?}"),
        }
    }
}

/// Under REPEATABLE READ, a lock renewed by another session after the
/// transaction's snapshot comes back `renewed = false`, without raising, and
/// the call still renews the others: the RVN given is no longer the lock's
/// (where `pglock_heartbeat`, which can only raise, raises 40001).
#[test]
fn under_repeatable_read_a_lock_renewed_after_the_snapshot_is_not_renewed() {
    let owner = unique_name("rr-many");
    let mut client = connect();
    let (names, rvns) = acquire_many(&mut client, &owner, 3);
    let mut transaction = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    // The snapshot is taken by the transaction's first statement.
    transaction.query_one("SELECT 1", &[]).unwrap();
    let mut other = connect();
    let moved = heartbeat(&mut other, &names[1], &owner, rvns[1]).expect("renewed elsewhere");

    let rows = renew(&mut transaction, &owner, &names, &rvns);
    transaction.commit().unwrap();
    assert_eq!(rows[1], (names[1].clone(), None, false), "{rows:?}");
    for index in [0, 2] {
        let (name, rvn, renewed) = &rows[index];
        assert_eq!(name, &names[index]);
        assert!(
            *renewed && rvn.is_some_and(|rvn| rvn > rvns[index]),
            "{rows:?}"
        );
    }
    // The lock is as the other session's renewal left it.
    let again = heartbeat(&mut client, &names[1], &owner, moved).expect("held at the moved RVN");
    assert!(again > moved);
}
