//! Trust under hostile and unusual conditions (issue 10's items, one test or
//! more each): owners within a role cooperate, roles do not trust each other, and
//! nobody squats, steals early, leaks or rewinds a lock.

use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::server::Server;
use pglock_tests::wait::{join, wait_for, WAIT_LIMIT};
use pglock_tests::*;

/// A login role, member of pglock_user, for the tests of this file.
fn user(role: &str) -> Client {
    connect_as(&pglock_role(role))
}

fn acquired_rvn(client: &mut Client, name: &str, owner: &str, lease: &str) -> i64 {
    let row = client
        .query_one(
            "SELECT acquired, rvn FROM pglock_acquire($1, $2, $3::text::interval)",
            &[&name, &owner, &lease],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0), "{name} is free");
    row.get(1)
}

// 1. A call that changes nothing holds nothing after it returns.
#[test]
fn a_release_that_changes_nothing_holds_nothing_in_an_open_transaction() {
    let name = unique_name("squat");
    let mut holder = user("trust_alice");
    let mut squatter = user("trust_bob");
    let mut observer = connect();
    let rvn = acquired_rvn(&mut holder, &name, "alice", "1 hour");

    squatter.batch_execute("BEGIN").unwrap();
    let released: bool = squatter
        .query_one("SELECT pglock_release($1, 'bob', 1)", &[&name])
        .unwrap()
        .get(0);
    assert!(!released);
    let all: i64 = squatter
        .query_one("SELECT pglock_release_all('alice')", &[])
        .unwrap()
        .get(0);
    assert_eq!(all, 0, "bob holds none of alice's locks");
    let squatter_pid = backend_pid(&mut squatter);
    assert_eq!(name_locks_held(&mut observer, squatter_pid), 0);

    // The holder's heartbeat goes through while the squatter's transaction is open.
    holder.batch_execute("SET lock_timeout = '2s'").unwrap();
    let renewed = heartbeat(&mut holder, &name, "alice", rvn).unwrap();
    assert!(renewed > rvn);
    squatter.batch_execute("COMMIT").unwrap();
}

// 2. wait_timeout bounds a wait, whatever it waits on.
#[test]
fn wait_timeout_bounds_a_wait_on_a_lock_written_by_an_open_transaction() {
    let name = unique_name("bounded");
    let mut holder = user("trust_alice");
    let rvn = acquired_rvn(&mut holder, &name, "alice", "200 ms");
    // The holder heartbeats inside a transaction it keeps open: its committed RVN
    // stands still past the lease and its name lock stays held.
    holder.batch_execute("BEGIN").unwrap();
    heartbeat(&mut holder, &name, "alice", rvn).unwrap();

    let waiter = thread::spawn({
        let name = name.clone();
        move || {
            let mut waiter = user("trust_alice");
            let start = Instant::now();
            let outcome = wait_as_waiter(&mut waiter, &name, Duration::from_secs(1)).unwrap();
            (outcome, start.elapsed())
        }
    });
    // However long the holder keeps its transaction open, the waiter returns.
    wait_for("the waiter to return", WAIT_LIMIT, || waiter.is_finished());
    let (outcome, _) = join(waiter);
    assert!(!outcome.acquired);
    assert_eq!((outcome.owner.as_str(), outcome.rvn), ("alice", rvn));
    holder.batch_execute("COMMIT").unwrap();
}

#[test]
fn wait_timeout_bounds_a_wait_on_a_lock_an_open_release_all_released() {
    let name = unique_name("bounded-all");
    let mut holder = user("trust_alice");
    let rvn = acquired_rvn(&mut holder, &name, "alice-all", "200 ms");
    thread::sleep(Duration::from_millis(300));
    // An open release-all locked the row and gave the name lock back.
    holder.batch_execute("BEGIN").unwrap();
    let released: i64 = holder
        .query_one("SELECT pglock_release_all('alice-all', keep => true)", &[])
        .unwrap()
        .get(0);
    assert_eq!(released, 1);
    let mut waiter = user("trust_alice");
    let outcome = wait_as_waiter(&mut waiter, &name, Duration::from_secs(1)).unwrap();
    assert!(!outcome.acquired, "the release is not committed yet");
    assert_eq!(outcome.rvn, rvn);
    holder.batch_execute("COMMIT").unwrap();
    let after = wait_as_waiter(&mut waiter, &name, Duration::from_secs(1)).unwrap();
    assert!(after.acquired, "once committed, the released lock is free");
}

// 3. The acting role is current_user where pglock is called.
#[test]
fn the_acting_role_is_the_role_the_call_runs_as() {
    let name = unique_name("acting");
    let mut alice = user("trust_alice");
    let bob_role = pglock_role("trust_bob");
    pglock_role("trust_carol");
    let mut admin = connect();
    // Bob offers a SECURITY DEFINER wrapper that releases whatever it is told.
    admin
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION bob_release(n text, o text, r bigint) RETURNS boolean
                 LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
                 AS $$ SELECT pglock_release(n, o, r) $$;
             ALTER FUNCTION bob_release(text, text, bigint) OWNER TO {bob_role};
             GRANT EXECUTE ON FUNCTION bob_release(text, text, bigint) TO PUBLIC;
             CREATE OR REPLACE FUNCTION alice_acquire(n text) RETURNS bigint
                 LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
                 AS $$ SELECT rvn FROM pglock_acquire(n, 'via-wrapper') $$;
             ALTER FUNCTION alice_acquire(text) OWNER TO trust_alice;
             GRANT EXECUTE ON FUNCTION alice_acquire(text) TO PUBLIC;"
        ))
        .unwrap();
    let rvn = acquired_rvn(&mut alice, &name, "alice", "1 hour");
    // Alice calls Bob's wrapper: it runs as Bob, who does not hold her lock.
    let error = sqlstate(alice.query_one("SELECT bob_release($1, 'alice', $2)", &[&name, &rvn]));
    assert_eq!(error, SqlState::INSUFFICIENT_PRIVILEGE);
    // Carol calls Alice's wrapper: the lock is Alice's, not Carol's.
    let mut carol = connect_as("trust_carol");
    let other = unique_name("acting-wrapper");
    carol
        .query_one("SELECT alice_acquire($1)", &[&other])
        .unwrap();
    let holder: String = admin
        .query_one(
            "SELECT holder_role::text FROM pglock_locks WHERE name = $1",
            &[&other],
        )
        .unwrap()
        .get(0);
    assert_eq!(holder, "trust_alice");
}

// 4. Across roles, a takeover also needs the lease run out by the server's clock.
#[test]
fn another_role_cannot_take_a_lock_over_before_its_lease_by_the_server_clock() {
    let name = unique_name("steal");
    let mut alice = user("trust_alice");
    let mut bob = user("trust_bob");
    let rvn = acquired_rvn(&mut alice, &name, "alice", "1 second");
    let early = acquire(&mut bob, &name, "bob", 10.0, Some(rvn)).unwrap();
    assert!(!early.acquired, "the RVN read from the view is not enough");
    // Within the role, owners cooperate: the RVN rule alone.
    let same_role = unique_name("steal-own");
    let own = acquired_rvn(&mut alice, &same_role, "alice-1", "1 hour");
    let mut alice2 = user("trust_alice");
    assert!(
        acquire(&mut alice2, &same_role, "alice-2", 10.0, Some(own))
            .unwrap()
            .acquired
    );
    thread::sleep(Duration::from_millis(1100));
    let late = acquire(&mut bob, &name, "bob", 10.0, Some(rvn)).unwrap();
    assert!(late.acquired);
}

// 5. A lock's data goes only to its holder's role.
#[test]
fn data_shows_only_to_the_holders_role_and_stays_with_it() {
    let name = unique_name("leak");
    let mut alice = user("trust_alice");
    let mut bob = user("trust_bob");
    alice
        .query_one(
            "SELECT FROM pglock_acquire($1, 'alice', '200 ms', 'secret'::bytea)",
            &[&name],
        )
        .unwrap();
    let read: Option<Vec<u8>> = bob
        .query_one("SELECT data FROM pglock_get($1)", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(read, None);
    let refused = acquire(&mut bob, &name, "bob", 10.0, None).unwrap();
    assert!(!refused.acquired);
    assert_eq!(refused.data, None);
    let mut alice2 = user("trust_alice");
    let own: Option<Vec<u8>> = alice2
        .query_one("SELECT data FROM pglock_get($1)", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(own.as_deref(), Some(&b"secret"[..]));
    thread::sleep(Duration::from_millis(300));
    let taken = acquire(&mut bob, &name, "bob", 10.0, Some(refused.rvn)).unwrap();
    assert!(taken.acquired);
    assert_eq!(taken.data, None, "a takeover across roles inherits nothing");
}

// 6. updated_at is the time of the write, not of the transaction's start.
#[test]
fn updated_at_is_the_time_of_the_write() {
    let name = unique_name("written-at");
    let mut alice = user("trust_alice");
    alice.batch_execute("BEGIN; SELECT pg_sleep(1)").unwrap();
    acquired_rvn(&mut alice, &name, "alice", "1 hour");
    let late: bool = alice
        .query_one(
            "SELECT updated_at >= now() + interval '0.9 s' FROM pglock_locks WHERE name = $1",
            &[&name],
        )
        .unwrap()
        .get(0);
    alice.batch_execute("COMMIT").unwrap();
    assert!(late, "updated_at is later than the transaction's start");
}

// 7 and 8. Nobody but pglock writes or reads the table; a rewound sequence
// moves no lock backwards.
#[test]
fn a_pg_write_all_data_member_can_neither_forge_rows_nor_rewind_a_lock() {
    let name = unique_name("forge");
    let mut alice = user("trust_alice");
    let rvn = acquired_rvn(&mut alice, &name, "alice", "1 hour");
    let mut admin = connect();
    let mut writer = connect_as(&login_role(
        "trust_writer",
        &["pg_write_all_data", "pg_read_all_data"],
    ));
    let insert = writer.execute(
        "INSERT INTO pglock.locks (name, owner, rvn, lease, holder_role) \
         VALUES ('forged', 'x', 1, '1 hour', 'trust_writer')",
        &[],
    );
    assert_eq!(sqlstate(insert), SqlState::INSUFFICIENT_PRIVILEGE);
    let updated = writer
        .execute(
            "UPDATE pglock.locks SET owner = 'writer' WHERE name = $1",
            &[&name],
        )
        .unwrap();
    let deleted = writer
        .execute("DELETE FROM pglock.locks WHERE name = $1", &[&name])
        .unwrap();
    let seen = writer
        .query("SELECT * FROM pglock.locks", &[])
        .unwrap()
        .len();
    assert_eq!((updated, deleted, seen), (0, 0, 0));
    let owner: String = admin
        .query_one("SELECT owner FROM pglock.locks WHERE name = $1", &[&name])
        .unwrap()
        .get(0);
    assert_eq!(owner, "alice");

    // setval is the one thing nobody can take from pg_write_all_data.
    writer
        .execute("SELECT setval('pglock.rvn_seq', 1)", &[])
        .unwrap();
    let renewed = heartbeat(&mut alice, &name, "alice", rvn).unwrap();
    assert!(
        renewed > rvn,
        "{renewed} after {rvn}: the RVN never goes back"
    );
    let next = acquired_rvn(&mut alice, &unique_name("forge-next"), "alice", "1 hour");
    assert!(next > renewed, "the sequence moved past the table: {next}");
}

// 9. release_all over more locks than the shared lock table holds.
#[test]
fn release_all_releases_thirty_thousand_locks_holding_no_name_lock() {
    let owner = unique_name("many");
    let mut alice = user("trust_alice");
    let mut observer = connect();
    for batch in 0..30 {
        alice
            .query_one(
                "SELECT count(*) FROM generate_series($2::int * 1000, $2::int * 1000 + 999) n, \
                        pglock_acquire($1 || '-' || n, $1, '1 hour')",
                &[&owner, &batch],
            )
            .unwrap();
    }
    alice.batch_execute("BEGIN").unwrap();
    let released: i64 = alice
        .query_one("SELECT pglock_release_all($1)", &[&owner])
        .unwrap()
        .get(0);
    assert_eq!(released, 30_000);
    let pid = backend_pid(&mut alice);
    assert_eq!(name_locks_held(&mut observer, pid), 0);
    alice.batch_execute("COMMIT").unwrap();
}

// 10. A database of another encoding is refused at install.
#[test]
fn pglock_refuses_to_install_in_a_database_that_is_not_utf8() {
    let mut admin = connect();
    let database = format!("latin1_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {database} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' \
             TEMPLATE template0"
        ))
        .unwrap();
    let mut config = config_as("postgres");
    config.dbname(&database);
    let mut latin1 = config.connect(NoTls).unwrap();
    let error = latin1.batch_execute("CREATE EXTENSION pglock").unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::FEATURE_NOT_SUPPORTED),
        "{error}"
    );
    drop(latin1);
    admin
        .batch_execute(&format!("DROP DATABASE {database}"))
        .unwrap();
}

// 11. A transaction that wrote a lock commits durably whatever the session says.
#[test]
fn an_acknowledged_acquire_survives_a_crash_even_with_synchronous_commit_off() {
    // The WAL writer waits 10 s between flushes: only a commit that flushes its
    // own WAL is on disk when the server is killed right after it.
    let server = Server::create("durable", 54347, &["wal_writer_delay = 10000ms"]);
    server
        .client()
        .batch_execute("CREATE ROLE app LOGIN; GRANT pglock_user TO app")
        .unwrap();
    let mut app = server.connect_as("app").unwrap();
    app.batch_execute("SET synchronous_commit = off").unwrap();
    let mut acknowledged = Vec::new();
    for round in 0..5 {
        let name = format!("durable-{round}");
        let rvn: i64 = app
            .query_one(
                "SELECT rvn FROM pglock_acquire($1, 'app', '1 hour')",
                &[&name],
            )
            .unwrap()
            .get(0);
        acknowledged.push((name, rvn));
    }
    server.crash();
    server.start();
    let mut admin = server.client();
    for (name, rvn) in acknowledged {
        let stored: Option<i64> = admin
            .query_opt("SELECT rvn FROM pglock.locks WHERE name = $1", &[&name])
            .unwrap()
            .map(|row| row.get(0));
        assert_eq!(stored, Some(rvn), "{name} survived the crash");
    }
}

// 13. Name locks are keyed by a secret of each installation.
#[test]
fn name_lock_keys_cannot_be_computed_offline() {
    let name = unique_name("keyed");
    let key_of = |client: &mut Client, name: &str| -> i64 {
        client.batch_execute("BEGIN").unwrap();
        client
            .query_one("SELECT FROM pglock_acquire($1, 'k', '1 hour')", &[&name])
            .unwrap();
        let key: i64 = client
            .query_one(
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks \
                  WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 20556",
                &[],
            )
            .unwrap()
            .get(0);
        client.batch_execute("ROLLBACK").unwrap();
        key
    };
    let fnv1a = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut admin = connect();
    let here = key_of(&mut admin, &name);
    assert_ne!(here as u64, fnv1a, "not the public FNV-1a of the name");
    assert_eq!(key_of(&mut admin, &name), here, "one name, one lock");
    // Another installation keys the same name differently.
    let database = format!("keyed_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .unwrap();
    let mut config = config_as("postgres");
    config.dbname(&database);
    let mut other = config.connect(NoTls).unwrap();
    other.batch_execute("CREATE EXTENSION pglock").unwrap();
    assert_ne!(key_of(&mut other, &name), here);
    drop(other);
    admin
        .batch_execute(&format!("DROP DATABASE {database}"))
        .unwrap();
}

// 14. Every kept statement keeps its index plan, whichever function built it.
#[test]
fn plans_keep_their_index_scans_under_forced_generic_plans() {
    // A database of its own: on a nearly empty table the planner prefers a
    // sequential scan, which a kept generic plan would then keep.
    let mut admin = connect();
    let database = format!("plans_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .unwrap();
    let mut config = config_as(&pglock_role("trust_alice"));
    config.dbname(&database);
    let mut setup = config_as("postgres");
    setup.dbname(&database);
    let mut setup = setup.connect(NoTls).unwrap();
    setup.batch_execute("CREATE EXTENSION pglock").unwrap();
    let mut alice = config.connect(NoTls).unwrap();
    for round in 0..3 {
        acquired_rvn(&mut alice, &format!("all-{round}"), "alice-plans", "1 hour");
    }
    // Statistics that show how small the table is.
    setup.batch_execute("VACUUM ANALYZE pglock.locks").unwrap();
    drop(setup);
    alice
        .batch_execute("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
        .unwrap();
    // release_all first, so it plans the release statements in this session.
    let released: i64 = alice
        .query_one("SELECT pglock_release_all('alice-plans')", &[])
        .unwrap()
        .get(0);
    assert_eq!(released, 3);
    let seq_scans = |client: &mut Client| -> i64 {
        client
            .query_one(
                "SELECT seq_scan FROM pg_stat_xact_all_tables \
                  WHERE schemaname = 'pglock' AND relname = 'locks'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    // Finding an owner's locks reads the whole table; nothing else may.
    let after_release_all = seq_scans(&mut alice);
    for round in 0..10 {
        let name = format!("one-{round}");
        let rvn = acquired_rvn(&mut alice, &name, "alice", "1 hour");
        let rvn = heartbeat(&mut alice, &name, "alice", rvn).unwrap();
        assert!(release(&mut alice, &name, "alice", rvn, false).unwrap());
    }
    let after_the_rest = seq_scans(&mut alice);
    alice.batch_execute("COMMIT").unwrap();
    drop(alice);
    admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .unwrap();
    assert_eq!(after_the_rest, after_release_all);
}

// 15. A waiting poll reads only what its decision needs.
#[test]
fn waiting_polls_do_not_read_the_holders_data() {
    let name = unique_name("big-data");
    let mut alice = user("trust_alice");
    alice
        .query_one(
            "SELECT FROM pglock_acquire($1, 'alice', '1 hour', \
                    (SELECT decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), \
                                   'hex') FROM generate_series(1, 500000)))",
            &[&name],
        )
        .unwrap();
    let mut waiter = user("trust_alice");
    waiter.batch_execute("BEGIN").unwrap();
    let outcome = wait_as_waiter(&mut waiter, &name, Duration::from_millis(1500)).unwrap();
    assert_eq!(outcome.data.map(|data| data.len()), Some(500_000));
    let toast_reads: i64 = waiter
        .query_one(
            "SELECT coalesce(sum(t.idx_scan), 0)::bigint FROM pg_stat_xact_all_tables t \
               JOIN pg_class c ON c.reltoastrelid = t.relid \
              WHERE c.relname = 'locks' AND c.relnamespace = 'pglock'::regnamespace",
            &[],
        )
        .unwrap()
        .get(0);
    waiter.batch_execute("COMMIT").unwrap();
    assert_eq!(toast_reads, 1, "about 15 polls, one read of the data");
}

// 16. An operator releases a lock whose holder role is gone.
#[test]
fn an_admin_force_releases_a_lock_whose_role_was_dropped() {
    let name = unique_name("stuck");
    let mut admin = connect();
    let operator = login_role("trust_admin", &["pglock_admin"]);
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS trust_gone; CREATE ROLE trust_gone LOGIN;
             GRANT pglock_user TO trust_gone;",
        )
        .unwrap();
    let mut gone = connect_as("trust_gone");
    acquired_rvn(&mut gone, &name, "gone", "1 hour");
    drop(gone);
    admin.batch_execute("DROP ROLE trust_gone").unwrap();
    let stuck: Vec<String> = admin
        .query(
            "SELECT name FROM pglock_locks \
              WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = holder_role)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        stuck.contains(&name),
        "the monitoring query finds it: {stuck:?}"
    );
    let mut alice = user("trust_alice");
    let refused = alice.query_one("SELECT pglock_force_release($1)", &[&name]);
    assert_eq!(sqlstate(refused), SqlState::INSUFFICIENT_PRIVILEGE);
    let forced = |client: &mut Client| -> i64 {
        client
            .query_one("SELECT force_released FROM pglock_stats()", &[])
            .unwrap()
            .get(0)
    };
    let before = forced(&mut admin);
    let mut operator = connect_as(&operator);
    let released: bool = operator
        .query_one("SELECT pglock_force_release($1)", &[&name])
        .unwrap()
        .get(0);
    assert!(released);
    let again: bool = operator
        .query_one("SELECT pglock_force_release($1)", &[&name])
        .unwrap()
        .get(0);
    assert!(!again, "nothing left to release");
    assert_eq!(forced(&mut admin), before + 1, "counted once");
}

// 17. The committing procedure says where it may be called, before waiting.
#[test]
fn the_committing_wait_refuses_a_transaction_block_in_its_own_words() {
    let name = unique_name("committing");
    let mut alice = user("trust_alice");
    let mut holder = user("trust_bob");
    acquired_rvn(&mut holder, &name, "bob", "1 hour");
    alice.batch_execute("BEGIN").unwrap();
    let start = Instant::now();
    let error = alice
        .batch_execute(&format!(
            "CALL pglock_acquire_wait_committing('{name}', 'alice', wait_timeout => '30 s')"
        ))
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "refused before waiting"
    );
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INVALID_TRANSACTION_TERMINATION);
    assert_eq!(
        db.message(),
        "pglock: pglock_acquire_wait_committing must be called outside a transaction block"
    );
    alice.batch_execute("ROLLBACK").unwrap();
}
