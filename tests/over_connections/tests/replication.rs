//! Replication: locks written with `synchronous_commit = remote_apply` to a primary
//! with a synchronous streaming standby are all on the standby when it is promoted,
//! and the promoted server goes on handing out larger RVNs.  A standby itself is
//! read-only: acquiring there fails clearly, reading works.

use std::thread;

use pglock_tests::server::Server;
use pglock_tests::{backend_pid, join, sqlstate, wait_for, SqlState, WAIT_LIMIT};

#[test]
fn locks_committed_with_remote_apply_survive_a_promotion() {
    let primary = Server::create("primary", 54342, &[]);
    let standby = Server::standby_of(&primary, "standby", 54343);
    let mut writer = primary.client();
    // Only now that the standby exists: with it named synchronous earlier, every
    // commit on the primary (CREATE EXTENSION too) would wait for it forever.
    writer
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .unwrap();
    writer.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("the standby to become synchronous", WAIT_LIMIT, || {
        writer
            .query_opt(
                "SELECT FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .unwrap()
            .is_some()
    });
    writer
        .batch_execute("SET synchronous_commit = remote_apply")
        .unwrap();

    // Replication is synchronous for real: with the standby's replay paused, a
    // pglock call does not return (its commit waits for the standby) ...
    let mut reader = standby.client();
    let mut admin = primary.client();
    reader
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    wait_for("the standby's replay to pause", WAIT_LIMIT, || {
        reader
            .query_one("SELECT pg_get_wal_replay_pause_state() = 'paused'", &[])
            .unwrap()
            .get(0)
    });
    let writer_pid = backend_pid(&mut writer);
    let writing = thread::spawn(move || {
        let rvn: i64 = writer
            .query_one(
                "SELECT rvn FROM pglock_acquire('replicated-paused', 'app', '1 hour', \
                        'data-paused'::text::bytea)",
                &[],
            )
            .unwrap()
            .get(0);
        (writer, rvn)
    });
    wait_for(
        "the acquire's commit to wait for the standby",
        WAIT_LIMIT,
        || {
            admin
                .query_one(
                    "SELECT coalesce(bool_or(wait_event = 'SyncRep'), false) \
                   FROM pg_stat_activity WHERE pid = $1",
                    &[&writer_pid],
                )
                .unwrap()
                .get(0)
        },
    );
    assert!(
        !writing.is_finished(),
        "the acquire returned before the standby had it"
    );
    let on_standby = reader
        .query_opt("SELECT FROM pglock_get('replicated-paused')", &[])
        .unwrap();
    assert!(on_standby.is_none(), "replay is paused");
    // ... and returns once the standby has applied it.
    reader
        .batch_execute("SELECT pg_wal_replay_resume()")
        .unwrap();
    let (mut writer, paused_rvn) = join(writing);
    let on_standby: i64 = reader
        .query_one("SELECT rvn FROM pglock_get('replicated-paused')", &[])
        .unwrap()
        .get(0);
    assert_eq!(on_standby, paused_rvn);

    // Held, renewed and kept-released locks, each with its own data.
    let mut expected = vec![(
        "replicated-paused".to_owned(),
        paused_rvn,
        false,
        "data-paused".to_owned(),
    )];
    for n in 0..60 {
        let name = format!("replicated-{n}");
        let data = format!("data-{n}");
        let row = writer
            .query_one(
                "SELECT rvn FROM pglock_acquire($1, 'app', '1 hour', $2::text::bytea)",
                &[&name, &data],
            )
            .unwrap();
        let mut rvn: i64 = row.get(0);
        let mut released = false;
        if n % 3 == 1 {
            rvn = writer
                .query_one("SELECT pglock_heartbeat($1, 'app', $2)", &[&name, &rvn])
                .unwrap()
                .get(0);
        }
        if n % 3 == 2 {
            writer
                .execute(
                    "SELECT pglock_release($1, 'app', $2, keep => true)",
                    &[&name, &rvn],
                )
                .unwrap();
            rvn = writer
                .query_one("SELECT rvn FROM pglock_get($1)", &[&name])
                .unwrap()
                .get(0);
            released = true;
        }
        expected.push((name, rvn, released, data));
    }
    let max_rvn = expected.iter().map(|(_, rvn, _, _)| *rvn).max().unwrap();

    // On the standby, before promotion: readable, not writable.
    let row = reader
        .query_one("SELECT count(*) FROM pglock.locks", &[])
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        61,
        "remote_apply: every lock is visible on the standby"
    );
    let attempt = reader.query_one("SELECT * FROM pglock_acquire('on-standby', 'app')", &[]);
    assert_eq!(sqlstate(attempt), SqlState::READ_ONLY_SQL_TRANSACTION);
    // A waiting acquire of a lock held for an hour fails at once too, instead of
    // waiting out the holder's lease before its write fails.
    let started = std::time::Instant::now();
    let waiting = reader.query_one(
        "SELECT * FROM pglock_acquire_wait('replicated-0', 'waiter', wait_timeout => '50 s')",
        &[],
    );
    assert_eq!(sqlstate(waiting), SqlState::READ_ONLY_SQL_TRANSACTION);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "it did not wait for the lock first"
    );
    // A fence on a standby could not hold off the primary's writers; it, the
    // bulk renewal and a semaphore's wait fail at once the same way.
    let (held_name, held_rvn, _, _) = &expected[0];
    for statement in [
        "SELECT pglock_fence($1, 'app', $2)::text",
        "SELECT count(*)::text FROM pglock_heartbeat_many('app', ARRAY[$1], ARRAY[$2::bigint])",
        "SELECT slot_name FROM pglock_acquire_slot($1, 'app', 2, wait_timeout => '50 s') \
          WHERE $2::bigint > 0",
    ] {
        let refused = reader.query_one(statement, &[held_name, held_rvn]);
        assert_eq!(
            sqlstate(refused),
            SqlState::READ_ONLY_SQL_TRANSACTION,
            "{statement}"
        );
    }

    drop((writer, admin, reader));
    drop(primary); // the primary goes away
    standby.promote();
    let mut client = standby.client();
    for (name, rvn, released, data) in &expected {
        let row = client
            .query_one(
                "SELECT owner, rvn, released, convert_from(data, 'UTF8') FROM pglock_get($1)",
                &[name],
            )
            .unwrap();
        assert_eq!(
            (
                row.get::<_, String>(0),
                row.get::<_, i64>(1),
                row.get::<_, bool>(2),
                row.get::<_, String>(3)
            ),
            ("app".to_owned(), *rvn, *released, data.clone()),
            "{name} after promotion"
        );
    }
    let fresh: i64 = client
        .query_one(
            "SELECT rvn FROM pglock_acquire('after-promotion', 'app')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        fresh > max_rvn,
        "the promoted server hands out larger RVNs: {fresh} > {max_rvn}"
    );
}
