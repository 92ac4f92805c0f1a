//! The PL/pgSQL job of examples/checkpointed_job.sql, run by two workers: a
//! worker whose lease ran out while it prepared a step learns it from its fence,
//! before the step writes anything; a worker that died is taken over after its
//! lease; the next holder resumes from the checkpoint kept in the lock's data.
//! Every step is done exactly once.

use std::thread;

use pglock_tests::{backend_pid, connect, join, sqlstate, wait_for, Client, SqlState, WAIT_LIMIT};

const LOCK: &str = "nightly-export";

fn worker_connection() -> Client {
    let mut client = connect();
    client
        .batch_execute("SET search_path = example_job, public")
        .unwrap();
    client
}

/// A fresh copy of the example and no lock left from an earlier run.
fn install_example() {
    let mut admin = worker_connection();
    admin
        .batch_execute("DROP SCHEMA IF EXISTS example_job CASCADE; CREATE SCHEMA example_job")
        .unwrap();
    admin
        .batch_execute(include_str!("../../../examples/checkpointed_job.sql"))
        .unwrap();
    let lock = admin
        .query_opt("SELECT rvn, owner FROM pglock_get($1)", &[&LOCK])
        .unwrap();
    if let Some(row) = lock {
        let (rvn, owner): (i64, String) = (row.get(0), row.get(1));
        let taken = admin
            .query_one(
                "SELECT rvn FROM pglock_acquire($1, 'cleanup', observed_rvn => $2)",
                &[&LOCK, &rvn],
            )
            .unwrap();
        let _ = owner;
        admin
            .execute(
                "SELECT pglock_release($1, 'cleanup', $2)",
                &[&LOCK, &taken.get::<_, i64>(0)],
            )
            .unwrap();
    }
}

fn steps_by(client: &mut Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT step, worker FROM example_job.export_log ORDER BY step",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn checkpoint(client: &mut Client) -> (bool, String) {
    let row = client
        .query_one(
            "SELECT released, convert_from(data, 'UTF8') FROM pglock_get($1)",
            &[&LOCK],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn a_stalled_worker_is_stopped_by_its_fence_and_a_dead_one_is_resumed() {
    install_example();
    let mut observer = worker_connection();

    // 1. worker-1 stalls preparing its first step for longer than its lease.
    let stalled = thread::spawn(|| {
        worker_connection().execute(
            "CALL nightly_export('worker-1', lease => '1 second', step_time => '4 seconds')",
            &[],
        )
    });
    wait_for("worker-1 to hold the lock", WAIT_LIMIT, || {
        observer
            .query_opt(
                "SELECT FROM pglock_get($1) WHERE owner = 'worker-1'",
                &[&LOCK],
            )
            .unwrap()
            .is_some()
    });
    // worker-2 takes over after the lease and does every step; worker-1's fence
    // then raises, and its step is never written.
    worker_connection()
        .execute("CALL nightly_export('worker-2', lease => '1 second')", &[])
        .unwrap();
    let outcome = join(stalled);
    assert_eq!(
        sqlstate(outcome),
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
    );
    let expected: Vec<(i32, String)> = (1..=10).map(|step| (step, "worker-2".to_owned())).collect();
    assert_eq!(steps_by(&mut observer), expected);
    assert_eq!(checkpoint(&mut observer), (true, "10".to_owned()));

    // 2. worker-1 dies after a few steps; worker-2 resumes from its checkpoint.
    install_example();
    let mut worker1 = worker_connection();
    let pid = backend_pid(&mut worker1);
    let dying = thread::spawn(move || {
        worker1.execute(
            "CALL nightly_export('worker-1', lease => '1 second', step_time => '0.3 seconds')",
            &[],
        )
    });
    wait_for("worker-1 to do three steps", WAIT_LIMIT, || {
        steps_by(&mut observer).len() >= 3
    });
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    assert!(join(dying).is_err());
    let (released, saved) = checkpoint(&mut observer);
    assert!(
        !released,
        "a dead worker's lock stays held until its lease runs out"
    );
    let saved: i32 = saved.parse().unwrap();

    worker_connection()
        .execute("CALL nightly_export('worker-2', lease => '1 second')", &[])
        .unwrap();
    let steps = steps_by(&mut observer);
    assert_eq!(
        steps.iter().map(|(step, _)| *step).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    for (step, worker) in steps {
        let expected = if step <= saved {
            "worker-1"
        } else {
            "worker-2"
        };
        assert_eq!(worker, expected, "step {step}, checkpoint {saved}");
    }
    assert_eq!(checkpoint(&mut observer), (true, "10".to_owned()));
}
