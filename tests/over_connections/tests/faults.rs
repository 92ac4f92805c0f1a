//! Faults: a server crash under load, a holder's connection killed, a reply lost
//! on the way back, timeouts and cancellation.  Nothing committed may be lost and
//! nothing may be left half-written.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::proxy::Proxy;
use pglock_tests::server::Server;
use pglock_tests::{
    acquire, acquire_wait, assert_cancelled_by_request, backend_pid, connect, heartbeat, join,
    join_all, release, server_port, server_socket_dir, sqlstate, test_database, unique_name,
    wait_until_blocked_by, SqlState, TerminateOnPanic, STATEMENT_TIMEOUT,
};

const WORKERS: usize = 8;
const LOCKS_PER_WORKER: usize = 20;
/// Calls in one pass over a worker's locks: acquire, heartbeat, release.
const CALLS_PER_PASS: usize = 3 * LOCKS_PER_WORKER;

/// A lock as the table shows it.  A write is told apart by its data, unique per
/// call (a kept release does not return its RVN, so RVNs are left out).
#[derive(Debug, Clone, PartialEq)]
enum State {
    Absent,
    Held(String),
    Released(String),
}

/// Per lock: the last state a call acknowledged, and the call in flight, if any;
/// per worker, how many calls were acknowledged.
#[derive(Debug, Default, Clone)]
struct Ledger {
    acknowledged: HashMap<String, State>,
    in_flight: HashMap<String, State>,
    max_rvn: i64,
    calls: [usize; WORKERS],
}

impl Ledger {
    fn begin(ledger: &Mutex<Ledger>, name: &str, state: State) {
        ledger
            .lock()
            .unwrap()
            .in_flight
            .insert(name.to_owned(), state);
    }

    fn acknowledge(ledger: &Mutex<Ledger>, worker: usize, name: &str, rvn: i64) {
        let mut ledger = ledger.lock().unwrap();
        let state = ledger.in_flight.remove(name).expect("a call in flight");
        ledger.acknowledged.insert(name.to_owned(), state);
        ledger.max_rvn = ledger.max_rvn.max(rvn);
        ledger.calls[worker] += 1;
    }
}

fn lock_name(worker: usize, lock: usize) -> String {
    format!("crash-{worker}-{lock}")
}

/// The crash, as a client sees it: the connection broke, with no word from the
/// server, or with the FATAL "terminating connection" (class 57P) that a backend
/// sends when it notices the postmaster is gone before it is killed itself.
/// Anything else the server answered is not the crash, whatever its SQLSTATE.
fn connection_lost(error: &postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => db.severity() == "FATAL" && db.code().code().starts_with("57P"),
        None => {
            error.code().is_none()
                && (error.is_closed()
                    || error
                        .source()
                        .is_some_and(|source| source.is::<std::io::Error>()))
        }
    }
}

/// One pass over a worker's own locks: acquire, heartbeat, release (keeping every
/// other time), each recorded in the ledger before it is sent and once it is
/// answered.  Stops at the first error.
fn pass(
    client: &mut postgres::Client,
    worker: usize,
    step: usize,
    ledger: &Mutex<Ledger>,
) -> Result<(), postgres::Error> {
    let owner = format!("worker-{worker}");
    for lock in 0..LOCKS_PER_WORKER {
        let name = lock_name(worker, lock);
        let tag = format!("{owner}-{step}-{lock}");

        let data = format!("{tag}-acquired");
        Ledger::begin(ledger, &name, State::Held(data.clone()));
        let row = client.query_one(
            "SELECT acquired, rvn FROM pglock_acquire($1, $2, '1 hour', $3::text::bytea, true)",
            &[&name, &owner, &data],
        )?;
        assert!(
            row.get::<_, bool>(0),
            "{name}: a worker's own free lock is acquired"
        );
        let rvn: i64 = row.get(1);
        Ledger::acknowledge(ledger, worker, &name, rvn);

        let data = format!("{tag}-renewed");
        Ledger::begin(ledger, &name, State::Held(data.clone()));
        let row = client.query_one(
            "SELECT pglock_heartbeat($1, $2, $3, $4::text::bytea)",
            &[&name, &owner, &rvn, &data],
        )?;
        let rvn: i64 = row.get(0);
        Ledger::acknowledge(ledger, worker, &name, rvn);

        let keep = (step + lock).is_multiple_of(2);
        let data = format!("{tag}-released");
        let state = if keep {
            State::Released(data.clone())
        } else {
            State::Absent
        };
        Ledger::begin(ledger, &name, state);
        let data = keep.then_some(data);
        let row = client.query_one(
            "SELECT pglock_release($1, $2, $3, $4, $5::text::bytea)",
            &[&name, &owner, &rvn, &keep, &data],
        )?;
        assert!(row.get::<_, bool>(0), "{name}: the holder releases");
        Ledger::acknowledge(ledger, worker, &name, rvn);
    }
    Ok(())
}

/// Passes until the server goes away; any other failure fails the test.
fn work_until_the_crash(mut client: postgres::Client, worker: usize, ledger: &Mutex<Ledger>) {
    for step in 0.. {
        if let Err(error) = pass(&mut client, worker, step, ledger) {
            assert!(
                connection_lost(&error),
                "worker-{worker}: a call failed while the server was up: {:?} {}",
                error.code(),
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned())
            );
            return;
        }
    }
}

/// The state of a lock in the table.
fn found(client: &mut postgres::Client, name: &str) -> State {
    let row = client
        .query_opt(
            "SELECT released, convert_from(data, 'UTF8') FROM pglock_get($1)",
            &[&name],
        )
        .unwrap();
    match row {
        None => State::Absent,
        Some(row) if row.get::<_, bool>(0) => State::Released(row.get(1)),
        Some(row) => State::Held(row.get(1)),
    }
}

#[test]
fn a_server_crash_under_load_loses_no_committed_lock() {
    // Calls each worker has answered before the crash, and makes after the restart.
    const CALLS_BEFORE: usize = 2 * CALLS_PER_PASS;
    const PASSES_AFTER: usize = 2;
    let server = Server::create("crash", 54341, &["max_connections = 50"]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (client, ledger) = (server.client(), ledger.clone());
            thread::spawn(move || work_until_the_crash(client, worker, &ledger))
        })
        .collect();
    // Crash once every worker is well into its work (not at a set time, which a
    // slow machine could reach before any call).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(stopped) = workers.iter().position(|worker| worker.is_finished()) {
            join(workers.remove(stopped));
            panic!("worker-{stopped} stopped while the server was up");
        }
        let least = *ledger.lock().unwrap().calls.iter().min().unwrap();
        if least >= CALLS_BEFORE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a worker made only {least} calls in two minutes"
        );
        thread::sleep(Duration::from_millis(10));
    }
    server.crash();
    join_all("workers at the crash", workers, Duration::from_secs(60));
    server.start();

    let ledger = ledger.lock().unwrap().clone();
    eprintln!(
        "calls per worker before the crash: {:?}; {} in flight",
        ledger.calls,
        ledger.in_flight.len()
    );
    assert_eq!(ledger.acknowledged.len(), WORKERS * LOCKS_PER_WORKER);
    let mut client = server.client();
    for (name, acknowledged) in &ledger.acknowledged {
        let found = found(&mut client, name);
        // The acknowledged state, or the call in flight at the crash landed on top.
        let in_flight = ledger.in_flight.get(name);
        assert!(
            &found == acknowledged || Some(&found) == in_flight,
            "{name}: acknowledged {acknowledged:?}, in flight {in_flight:?}, found {found:?}"
        );
    }
    // The RVN sequence survived too: no fencing token is handed out twice.
    let fresh = acquire(&mut client, &unique_name("after-crash"), "new", 60.0, None).unwrap();
    assert!(
        fresh.rvn > ledger.max_rvn,
        "RVN {} after the crash, {} before",
        fresh.rvn,
        ledger.max_rvn
    );

    // After the restart the workers go on from what they find, under the same
    // load: a lock left held is released by its worker, then every call works.
    let before_crash = ledger.max_rvn;
    let after = Arc::new(Mutex::new(Ledger::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (mut client, after) = (server.client(), after.clone());
            thread::spawn(move || {
                let owner = format!("worker-{worker}");
                for lock in 0..LOCKS_PER_WORKER {
                    let name = lock_name(worker, lock);
                    let held = client
                        .query_opt(
                            "SELECT rvn FROM pglock_get($1) WHERE NOT released",
                            &[&name],
                        )
                        .unwrap();
                    if let Some(row) = held {
                        let rvn: i64 = row.get(0);
                        let released = client
                            .query_one("SELECT pglock_release($1, $2, $3)", &[&name, &owner, &rvn])
                            .unwrap();
                        assert!(
                            released.get::<_, bool>(0),
                            "{name}: released after the restart"
                        );
                    }
                }
                for step in 0..PASSES_AFTER {
                    pass(&mut client, worker, 1_000_000 + step, &after).unwrap_or_else(|error| {
                        panic!("worker-{worker} after the restart: {error}")
                    });
                }
            })
        })
        .collect();
    join_all(
        "workers after the restart",
        workers,
        Duration::from_secs(120),
    );
    let after = after.lock().unwrap();
    assert!(
        after
            .calls
            .iter()
            .all(|&calls| calls == PASSES_AFTER * CALLS_PER_PASS),
        "calls per worker after the restart: {:?}",
        after.calls
    );
    assert!(after.in_flight.is_empty());
    for (name, acknowledged) in &after.acknowledged {
        assert_eq!(&found(&mut client, name), acknowledged, "{name}");
    }
    let last = acquire(
        &mut client,
        &unique_name("after-restart"),
        "new",
        60.0,
        None,
    )
    .unwrap();
    assert!(after.max_rvn > before_crash && last.rvn > after.max_rvn);
}

#[test]
fn a_killed_holder_is_taken_over_only_after_its_rvn_stood_still_for_a_lease() {
    let name = unique_name("killed");
    let lease = Duration::from_millis(1500);
    let mut holder = connect();
    let pid = backend_pid(&mut holder);
    let held = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None).unwrap();
    let mut contender = connect();
    let seen_alive = acquire(&mut contender, &name, "contender", 60.0, None).unwrap();
    assert_eq!((seen_alive.acquired, seen_alive.rvn), (false, held.rvn));
    let last_sent = Instant::now();
    let rvn = heartbeat(&mut holder, &name, "holder", held.rvn).unwrap();
    let mut admin = connect();
    admin
        .execute("SELECT pg_terminate_backend($1, 5000)", &[&pid])
        .unwrap();
    let killed_at = Instant::now();
    assert!(
        holder.query_one("SELECT 1", &[]).is_err(),
        "the holder's connection is gone"
    );

    // A claim with the RVN seen before the holder's last heartbeat is refused: the
    // holder was alive after it.
    let stale = acquire(&mut contender, &name, "contender", 60.0, Some(held.rvn)).unwrap();
    assert_eq!((stale.acquired, stale.rvn), (false, rvn));
    // The lock outlives the connection: a wait of half the lease is refused ...
    let early = acquire_wait(&mut contender, &name, "contender", lease, Some(lease / 2)).unwrap();
    assert_eq!((early.acquired, early.rvn), (false, rvn));
    // ... a patient one takes it over, a full lease after the holder's last
    // heartbeat (which the server saw), never before.
    let taken = acquire_wait(&mut contender, &name, "contender", lease, Some(lease * 10)).unwrap();
    assert!(taken.acquired && taken.rvn > rvn, "{taken:?}");
    assert!(
        last_sent.elapsed() >= lease,
        "taken over {:?} after the last heartbeat, before the lease {lease:?}",
        last_sent.elapsed()
    );
    assert!(killed_at.elapsed() < lease * 10);
}

#[test]
fn a_heartbeat_whose_reply_is_lost_leaves_the_lock_whole_and_the_client_told() {
    let name = unique_name("lost-reply");
    let port = server_port();
    let server_socket = server_socket_dir();
    let proxy_dir = std::env::temp_dir().join(format!("pglock-proxy-{}", std::process::id()));
    let proxy = Proxy::start(&proxy_dir, &server_socket, port);
    let connect_through_proxy = || {
        postgres::Config::new()
            .host_path(&proxy.socket_dir)
            .port(port)
            .user("postgres")
            .dbname(&test_database())
            .options(STATEMENT_TIMEOUT)
            .connect(postgres::NoTls)
            .expect("connect through the proxy")
    };
    let mut client = connect_through_proxy();
    let held = acquire(&mut client, &name, "holder", 60.0, None).unwrap();
    let statement = client
        .prepare("SELECT pglock_heartbeat($1, $2, $3, 'beat'::bytea)")
        .unwrap();
    proxy.swallow_next_reply();
    let outcome = client.query_one(&statement, &[&name, &"holder", &held.rvn]);
    assert!(outcome.is_err(), "the client never got its reply");

    // The server did renew the lease; the client still thinks the RVN is the old one.
    let mut observer = connect();
    let row = observer
        .query_one(
            "SELECT owner, rvn, convert_from(data, 'UTF8') FROM pglock_get($1)",
            &[&name],
        )
        .unwrap();
    let (owner, new_rvn, data): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((owner.as_str(), data.as_str()), ("holder", "beat"));
    assert!(new_rvn > held.rvn);

    // Back on a new connection, the client's next call with the RVN it knows is
    // refused as documented, and changes nothing.
    let mut client = connect_through_proxy();
    let attempt = heartbeat(&mut client, &name, "holder", held.rvn);
    assert_eq!(
        sqlstate(attempt),
        SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
    );
    assert!(!release(&mut client, &name, "holder", held.rvn, false).unwrap());
    let after = observer
        .query_one("SELECT rvn FROM pglock_get($1)", &[&name])
        .unwrap();
    assert_eq!(after.get::<_, i64>(0), new_rvn, "the lock is untouched");
    // It recovers like any contender: once the RVN stood still for a lease, take over.
    assert!(
        acquire(&mut client, &name, "holder", 60.0, Some(new_rvn))
            .unwrap()
            .acquired
    );
    let _ = std::fs::remove_dir_all(proxy_dir);
}

#[test]
fn timeouts_and_cancellation_leave_no_partial_state() {
    let name = unique_name("timeouts");
    let mut holder = connect();
    let holder_pid = backend_pid(&mut holder);
    let held = acquire(&mut holder, &name, "holder", 60.0, None).unwrap();
    // The holder heartbeats inside an open transaction: the lock's name is busy.
    let mut tx = holder.transaction().unwrap();
    let renewed: i64 = tx
        .query_one(
            "SELECT pglock_heartbeat($1, 'holder', $2, 'renewed'::bytea)",
            &[&name, &held.rvn],
        )
        .unwrap()
        .get(0);

    let mut other = connect();
    other.batch_execute("SET lock_timeout = '100ms'").unwrap();
    let attempt = heartbeat(&mut other, &name, "holder", held.rvn);
    assert_eq!(sqlstate(attempt), SqlState::LOCK_NOT_AVAILABLE);
    let attempt = acquire(&mut other, &name, "other", 60.0, Some(held.rvn));
    assert_eq!(sqlstate(attempt), SqlState::LOCK_NOT_AVAILABLE);
    other
        .batch_execute("RESET lock_timeout; SET statement_timeout = '100ms'")
        .unwrap();
    let attempt = release(&mut other, &name, "holder", held.rvn, false);
    assert_eq!(sqlstate(attempt), SqlState::QUERY_CANCELED);
    other.batch_execute("RESET statement_timeout").unwrap();

    // Cancel a takeover waiting for the name's lock, from a third session.
    let pid = backend_pid(&mut other);
    let canceller = thread::spawn(move || {
        // Should this thread fail, the takeover below must not wait on.
        let _guard = TerminateOnPanic { pid };
        let mut admin = connect();
        wait_until_blocked_by(&mut admin, pid, holder_pid);
        admin
            .execute("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
    });
    let attempt = acquire(&mut other, &name, "other", 60.0, Some(held.rvn));
    join(canceller);
    assert_cancelled_by_request(attempt, "the waiting takeover");

    tx.commit().unwrap();
    let row = other
        .query_one(
            "SELECT owner, rvn, convert_from(data, 'UTF8') FROM pglock_get($1)",
            &[&name],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i64>(1),
            row.get::<_, String>(2)
        ),
        ("holder".into(), renewed, "renewed".into()),
        "only the committed heartbeat is there"
    );
    // The interrupted session works normally afterwards.
    assert!(
        acquire(&mut other, &name, "other", 60.0, Some(renewed))
            .unwrap()
            .acquired
    );
}
