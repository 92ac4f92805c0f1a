//! Leader election driven by pg_cron, for real: two scheduled jobs, standing for
//! two application instances, run the recipe in examples/leader_election.sql.
//! The leader's session is terminated mid-run; the other takes over after the
//! lease, and the work log never shows two leaders in one round.

use std::time::{Duration, Instant};

use pglock_tests::server::Server;

const LEASE_MS: f64 = 2000.0;
const RUN_FOR: &str = "14 seconds";

#[test]
fn two_cron_jobs_elect_one_leader_and_the_survivor_takes_over() {
    let server = Server::create(
        "cron",
        54345,
        &[
            "shared_preload_libraries = 'pg_cron'",
            "cron.database_name = 'postgres'",
            // pg_cron's jobs connect like clients; this server only has a socket.
            "cron.host = '/tmp/pglock-cron/socket'",
        ],
    );
    let mut admin = server.client();
    admin.batch_execute("CREATE EXTENSION pg_cron").unwrap();
    admin
        .batch_execute(include_str!("../../../examples/leader_election.sql"))
        .unwrap();
    for instance in ["instance-a", "instance-b"] {
        admin
            .execute(
                "SELECT cron.schedule($1, '@reboot', \
                   format('CALL leader_loop(%L, %L)', $1::text, $2::text))",
                &[&instance, &RUN_FOR],
            )
            .unwrap();
    }
    // @reboot jobs start with the server.
    drop(admin);
    server.restart();
    let mut admin = server.client();

    // Let the first leader work a few rounds, then end its session with
    // pg_terminate_backend: SIGTERM to its backend, which aborts the round it is
    // in and exits, so the job fails.  Nothing releases the lock on the way out
    // (a lease is not a session): the other instance must wait out the lease.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_leader_pid: i32 = loop {
        let row = admin
            .query_opt(
                "SELECT backend_pid FROM leader_work_log GROUP BY backend_pid \
                 HAVING count(*) >= 6",
                &[],
            )
            .unwrap();
        if let Some(row) = row {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "no leader worked within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&first_leader_pid])
        .unwrap();

    // Both jobs end: the terminated one failed, the survivor ran out its time.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM cron.job_run_details WHERE status IN ('starting', 'running')",
                &[],
            )
            .unwrap()
            .get(0);
        let ran: i64 = admin
            .query_one("SELECT count(*) FROM cron.job_run_details", &[])
            .unwrap()
            .get(0);
        if ran == 2 && running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let statuses: Vec<String> = admin
        .query(
            "SELECT status FROM cron.job_run_details ORDER BY status",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(statuses, ["failed", "succeeded"]);

    // The work log: one leader, then (after the termination) the other, never both.
    let log: Vec<(f64, String, i32, i64)> = admin
        .query(
            "SELECT extract(epoch FROM at)::float8 * 1000, instance, backend_pid, fencing_rvn \
               FROM leader_work_log ORDER BY at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let switches: Vec<usize> = (1..log.len())
        .filter(|&i| log[i].1 != log[i - 1].1)
        .collect();
    assert_eq!(switches.len(), 1, "exactly one change of leader: {log:?}");
    let switch = switches[0];
    assert_eq!(
        log[switch - 1].2,
        first_leader_pid,
        "the terminated instance led first"
    );
    let gap_ms = log[switch].0 - log[switch - 1].0;
    assert!(
        gap_ms >= LEASE_MS,
        "the survivor took over {gap_ms} ms after the last heartbeat, before the lease"
    );
    assert!(
        log.windows(2).all(|pair| pair[1].3 > pair[0].3),
        "fencing tokens only grow"
    );
    assert!(
        log.len() > switch + 4,
        "the survivor led for several rounds"
    );
    // Rounds of half a second, shorter than the lease: no round has two leaders.
    let shared_rounds: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT floor(extract(epoch FROM at) * 2) AS round \
               FROM leader_work_log GROUP BY 1 HAVING count(DISTINCT instance) > 1) r",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(shared_rounds, 0);
}
