//! pglock_fence over real connections: while a holder's fencing transaction is
//! open, no other transaction's takeover, heartbeat or release of the lock
//! commits (each waits, as the server shows, or a bounded wait counts the lock
//! as busy); a fence after a takeover raises and the transaction's writes roll
//! back; the holder's transactions fence one lock together; a fence waits out
//! the owner's own bulk renewal still in progress; another role cannot fence.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::{
    acquire, backend_pid, connect, connect_as, heartbeat, join, pglock_role, release, sqlstate,
    unique_name, wait_as_waiter, wait_until_blocked_by, Client, SqlState, WAIT_LIMIT,
};

/// A table of work rows for this test, each carrying its fencing token.
fn work_table(client: &mut Client) -> String {
    let table = unique_name("fenced_work").replace('-', "_");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (writer text NOT NULL, token bigint NOT NULL)"
        ))
        .unwrap();
    table
}

fn work_rows(client: &mut Client, table: &str) -> Vec<(String, i64)> {
    client
        .query(
            &format!("SELECT writer, token FROM {table} ORDER BY token, writer"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn fence(
    client: &mut impl postgres::GenericClient,
    name: &str,
    owner: &str,
    rvn: i64,
) -> Result<i64, postgres::Error> {
    Ok(client
        .query_one("SELECT pglock_fence($1, $2, $3)", &[&name, &owner, &rvn])?
        .get(0))
}

/// What the lock looks like to another session: `(owner, rvn)`.
fn lock_seen(observer: &mut Client, name: &str) -> (String, i64) {
    let row = observer
        .query_one("SELECT owner, rvn FROM pglock_get($1)", &[&name])
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn a_takeover_tried_while_a_fencing_transaction_is_open_commits_only_after_it() {
    let name = unique_name("fenced");
    let mut observer = connect();
    let table = work_table(&mut observer);
    let mut holder = connect();
    let holder_pid = backend_pid(&mut holder);
    let held = acquire(&mut holder, &name, "holder", 60.0, None).unwrap();

    // The holder went silent (same role: the RVN seen is enough to take over),
    // yet it is in the middle of a fenced transaction writing its work.
    let mut tx = holder.transaction().unwrap();
    let token: i64 = tx
        .query_one("SELECT pglock_fence($1, 'holder', $2)", &[&name, &held.rvn])
        .unwrap()
        .get(0);
    assert_eq!(token, held.rvn, "the fence returns the RVN and writes none");
    tx.execute(
        &format!("INSERT INTO {table} VALUES ('holder', $1)"),
        &[&token],
    )
    .unwrap();

    let mut contender = connect();
    let contender_pid = backend_pid(&mut contender);
    let (sender, outcome) = mpsc::channel();
    let taking = thread::spawn({
        let name = name.clone();
        move || {
            let taken = acquire(&mut contender, &name, "contender", 60.0, Some(held.rvn));
            sender.send(()).unwrap();
            taken
        }
    });
    // The server shows the takeover waiting for the fencing transaction, and it
    // has not returned; the lock is still the holder's, and the holder can go on
    // writing under it.
    wait_until_blocked_by(&mut observer, contender_pid, holder_pid);
    assert!(outcome.try_recv().is_err(), "the takeover waits");
    assert_eq!(lock_seen(&mut observer, &name), ("holder".into(), held.rvn));
    tx.execute(
        &format!("INSERT INTO {table} VALUES ('holder-later', $1)"),
        &[&token],
    )
    .unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(outcome.try_recv().is_err(), "the takeover still waits");
    tx.commit().unwrap();

    // Then it goes through (the RVN did stand still), after the holder's work.
    let taken = join(taking).unwrap();
    assert!(taken.acquired && taken.rvn > token, "{taken:?}");
    assert_eq!(
        work_rows(&mut observer, &table),
        [("holder".into(), token), ("holder-later".into(), token)]
    );
    assert_eq!(
        lock_seen(&mut observer, &name),
        ("contender".into(), taken.rvn)
    );
}

/// Every other writer of the lock waits too: the owner's heartbeat from another
/// connection, a release, an operator's forced release.
#[test]
fn heartbeats_and_releases_from_other_transactions_wait_for_the_fence() {
    let statements = [
        "SELECT pglock_heartbeat($1, 'holder', $2)::text",
        "SELECT pglock_release($1, 'holder', $2)::text",
        "SELECT pglock_force_release($1)::text WHERE $2::bigint > 0",
    ];
    for statement in statements {
        let name = unique_name("fenced-writers");
        let mut observer = connect();
        let mut holder = connect();
        let holder_pid = backend_pid(&mut holder);
        let held = acquire(&mut holder, &name, "holder", 60.0, None).unwrap();
        let mut tx = holder.transaction().unwrap();
        tx.query_one("SELECT pglock_fence($1, 'holder', $2)", &[&name, &held.rvn])
            .unwrap();

        let mut writer = connect();
        let writer_pid = backend_pid(&mut writer);
        let writing = thread::spawn({
            let name = name.clone();
            move || {
                writer
                    .query_one(statement, &[&name, &held.rvn])
                    .map(|row| row.get::<_, String>(0))
            }
        });
        wait_until_blocked_by(&mut observer, writer_pid, holder_pid);
        assert_eq!(
            lock_seen(&mut observer, &name),
            ("holder".into(), held.rvn),
            "{statement}: nothing committed while fenced"
        );
        tx.commit().unwrap();
        let done = join(writing).unwrap();
        assert!(
            done != "false",
            "{statement} went through after the fence: {done}"
        );
    }
}

#[test]
fn a_fence_after_a_takeover_raises_and_the_transactions_writes_roll_back() {
    let name = unique_name("fenced-late");
    let mut observer = connect();
    let table = work_table(&mut observer);
    let mut holder = connect();
    let held = acquire(&mut holder, &name, "holder", 60.0, None).unwrap();

    let mut tx = holder.transaction().unwrap();
    tx.execute(
        &format!("INSERT INTO {table} VALUES ('holder', $1)"),
        &[&held.rvn],
    )
    .unwrap();
    let taken = acquire(&mut connect(), &name, "contender", 60.0, Some(held.rvn)).unwrap();
    assert!(taken.acquired);
    let error = tx
        .query_one("SELECT pglock_fence($1, 'holder', $2)", &[&name, &held.rvn])
        .expect_err("the lock was taken over");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert_eq!(
        db.detail(),
        Some("The lock is held by owner \"contender\".")
    );
    // The transaction is aborted: its COMMIT rolls it back.
    let _ = tx.commit();
    assert_eq!(work_rows(&mut observer, &table), []);
}

/// A bounded wait never queues behind a fence: the lock counts as busy for the
/// whole `wait_timeout`, however long its RVN stood still, and is taken over
/// at once after the fencing transaction ends.
#[test]
fn a_bounded_wait_counts_a_fenced_lock_as_busy() {
    let name = unique_name("fenced-busy");
    let mut holder = connect();
    let held = acquire(&mut holder, &name, "holder", 0.2, None).unwrap();
    let mut tx = holder.transaction().unwrap();
    tx.query_one("SELECT pglock_fence($1, 'holder', $2)", &[&name, &held.rvn])
        .unwrap();
    let mut waiter = connect();
    let start = Instant::now();
    let refused = wait_as_waiter(&mut waiter, &name, Duration::from_secs(1)).unwrap();
    let waited = start.elapsed();
    assert!(!refused.acquired, "{refused:?}");
    assert_eq!(refused.rvn, held.rvn);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < WAIT_LIMIT, "bounded by wait_timeout: {waited:?}");
    tx.commit().unwrap();
    let taken = wait_as_waiter(&mut waiter, &name, Duration::from_secs(5)).unwrap();
    assert!(taken.acquired, "the fence is over and the RVN stood still");
}

#[test]
fn the_holders_transactions_fence_a_lock_together() {
    let name = unique_name("fenced-shared");
    let mut first = connect();
    let held = acquire(&mut first, &name, "holder", 60.0, None).unwrap();
    let mut first_tx = first.transaction().unwrap();
    first_tx
        .query_one("SELECT pglock_fence($1, 'holder', $2)", &[&name, &held.rvn])
        .unwrap();
    // A second connection of the holder fences while the first is open: it
    // does not wait (a lock_timeout would end it with 55P03 if it did).
    let mut second = connect();
    second.batch_execute("SET lock_timeout = '1s'").unwrap();
    let mut second_tx = second.transaction().unwrap();
    assert_eq!(
        fence(&mut second_tx, &name, "holder", held.rvn).unwrap(),
        held.rvn
    );
    second_tx.commit().unwrap();
    first_tx.commit().unwrap();
}

/// The owner's own heartbeat_many gives each name's lock back before it commits,
/// keeping the row locked: a fence waits for that transaction and then sees
/// the RVN it committed (or, after a rollback, the lock as it was).
#[test]
fn a_fence_waits_out_a_bulk_renewal_in_progress_and_sees_its_outcome() {
    for commits in [true, false] {
        let name = unique_name("fenced-bulk");
        let mut observer = connect();
        let mut owner = connect();
        let owner_pid = backend_pid(&mut owner);
        let held = acquire(&mut owner, &name, "holder", 60.0, None).unwrap();
        let mut bulk = owner.transaction().unwrap();
        let renewed: i64 = bulk
            .query_one(
                "SELECT rvn FROM pglock_heartbeat_many('holder', ARRAY[$1], ARRAY[$2::bigint])",
                &[&name, &held.rvn],
            )
            .unwrap()
            .get(0);

        let mut fencer = connect();
        let fencer_pid = backend_pid(&mut fencer);
        let fencing = thread::spawn({
            let name = name.clone();
            move || {
                let mut tx = fencer.transaction().unwrap();
                let fenced = fence(&mut tx, &name, "holder", held.rvn);
                let _ = tx.rollback();
                fenced
            }
        });
        wait_until_blocked_by(&mut observer, fencer_pid, owner_pid);
        if commits {
            bulk.commit().unwrap();
            let error = join(fencing).expect_err("the renewal moved the RVN on");
            assert_eq!(
                error.code(),
                Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
            );
            let detail = error.as_db_error().and_then(|db| db.detail()).unwrap_or("");
            assert!(
                detail.contains(&format!("RVN is now {renewed}")),
                "{detail}"
            );
        } else {
            bulk.rollback().unwrap();
            assert_eq!(join(fencing).unwrap(), held.rvn);
        }
    }
}

/// Another role cannot fence a lock, even naming its owner and RVN, and its
/// attempt leaves nothing behind in its open transaction.
#[test]
fn another_role_cannot_fence_and_its_attempt_blocks_nobody() {
    let name = unique_name("fenced-theirs");
    let mut holder = connect_as(&pglock_role("fence_alice"));
    let held = acquire(&mut holder, &name, "shared-label", 60.0, None).unwrap();
    let mut mallory = connect_as(&pglock_role("fence_mallory"));
    mallory.batch_execute("BEGIN").unwrap();
    mallory.batch_execute("SAVEPOINT attempt").unwrap();
    let refused = fence(&mut mallory, &name, "shared-label", held.rvn);
    assert_eq!(sqlstate(refused), SqlState::INSUFFICIENT_PRIVILEGE);
    mallory.batch_execute("ROLLBACK TO attempt").unwrap();
    // Mallory's transaction stays open; the holder renews at once.
    holder.batch_execute("SET lock_timeout = '2s'").unwrap();
    let renewed = heartbeat(&mut holder, &name, "shared-label", held.rvn).unwrap();
    assert!(renewed > held.rvn);
    mallory.batch_execute("COMMIT").unwrap();
}

/// While the holder's fence is open, another role's heartbeat, release and bulk
/// renewal of the lock are answered at once instead of queuing for the name:
/// queued, they would make the holder's next fence, from another of its
/// sessions, wait behind them until the first fence ends.
#[test]
fn another_roles_futile_writes_during_a_fence_are_answered_without_queuing() {
    let name = unique_name("fenced-futile");
    let mut holder = connect_as(&pglock_role("fence_alice"));
    let held = acquire(&mut holder, &name, "shared-label", 60.0, None).unwrap();
    let mut first_fence = holder.transaction().unwrap();
    fence(&mut first_fence, &name, "shared-label", held.rvn).unwrap();

    // Mallory knows the owner and RVN (pglock_get shows them).  A bounded lock
    // wait makes queuing fail on its own SQLSTATE, 55P03, instead of hanging.
    let mut mallory = connect_as(&pglock_role("fence_mallory"));
    mallory.batch_execute("SET lock_timeout = '5s'").unwrap();
    let renewed = heartbeat(&mut mallory, &name, "shared-label", held.rvn);
    assert_eq!(sqlstate(renewed), SqlState::INSUFFICIENT_PRIVILEGE);
    let released = release(&mut mallory, &name, "shared-label", held.rvn, false);
    assert_eq!(sqlstate(released), SqlState::INSUFFICIENT_PRIVILEGE);
    let many: bool = mallory
        .query_one(
            "SELECT renewed FROM pglock_heartbeat_many('shared-label', ARRAY[$1::text], ARRAY[$2::bigint])",
            &[&name, &held.rvn],
        )
        .unwrap()
        .get(0);
    assert!(!many, "another role's bulk renewal renews nothing");

    // The holder's second fence, from another session, is granted while the
    // first is still open.
    let mut second_session = connect_as(&pglock_role("fence_alice"));
    second_session
        .batch_execute("SET lock_timeout = '5s'")
        .unwrap();
    let mut second_fence = second_session.transaction().unwrap();
    let token = fence(&mut second_fence, &name, "shared-label", held.rvn).unwrap();
    assert_eq!(token, held.rvn);
    second_fence.commit().unwrap();
    first_fence.commit().unwrap();
}
