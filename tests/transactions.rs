//! pglock calls inside explicit transactions: a write holds its lock until the
//! transaction ends; others wait for it, then see what it committed.  A refused
//! acquire only reads: it takes no transaction id.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pglock_tests::{acquire, connect, unique_name};

#[test]
fn an_uncommitted_acquire_makes_others_wait_then_see_its_outcome() {
    for commit in [true, false] {
        let name = unique_name("xact");
        let mut first = connect();
        let mut tx = first.transaction().unwrap();
        let taken = tx
            .query_one("SELECT acquired FROM pglock_acquire($1, 'first')", &[&name])
            .unwrap();
        assert!(taken.get::<_, bool>(0));

        let (sender, outcome) = mpsc::channel();
        let contender = {
            let name = name.clone();
            thread::spawn(move || {
                let mut second = connect();
                sender
                    .send(acquire(&mut second, &name, "second", 30.0, None).unwrap())
                    .unwrap();
            })
        };
        assert!(
            outcome.recv_timeout(Duration::from_millis(500)).is_err(),
            "the second caller waits for the first transaction"
        );
        if commit {
            tx.commit().unwrap()
        } else {
            tx.rollback().unwrap()
        }
        let seen = outcome
            .recv_timeout(Duration::from_secs(10))
            .expect("the wait ends");
        contender.join().unwrap();
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
