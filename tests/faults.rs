//! Faults: a server crash under load, a holder's connection killed, a reply lost
//! on the way back, timeouts and cancellation.  Nothing committed may be lost and
//! nothing may be left half-written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pglock_tests::proxy::Proxy;
use pglock_tests::server::Server;
use pglock_tests::{acquire, connect, heartbeat, release, sqlstate, unique_name, SqlState};

/// A lock as the table shows it.  A write is told apart by its data, unique per
/// call (a kept release does not return its RVN, so RVNs are left out).
#[derive(Debug, Clone, PartialEq)]
enum State {
    Absent,
    Held(String),
    Released(String),
}

/// Per lock: the last state a call acknowledged, and the call in flight, if any.
#[derive(Debug, Default, Clone)]
struct Ledger {
    acknowledged: HashMap<String, State>,
    in_flight: HashMap<String, State>,
    max_rvn: i64,
}

impl Ledger {
    fn begin(ledger: &Mutex<Ledger>, name: &str, state: State) {
        ledger
            .lock()
            .unwrap()
            .in_flight
            .insert(name.to_owned(), state);
    }

    fn acknowledge(ledger: &Mutex<Ledger>, name: &str, rvn: i64) {
        let mut ledger = ledger.lock().unwrap();
        let state = ledger.in_flight.remove(name).expect("a call in flight");
        ledger.acknowledged.insert(name.to_owned(), state);
        ledger.max_rvn = ledger.max_rvn.max(rvn);
    }
}

/// Cycles a worker's own 20 locks (acquire, heartbeat, release keeping every other
/// time) until a call fails: the server is gone.
fn work(mut client: postgres::Client, worker: usize, ledger: &Mutex<Ledger>) {
    let owner = format!("worker-{worker}");
    for step in 0.. {
        for lock in 0..20 {
            let name = format!("crash-{worker}-{lock}");
            let tag = format!("{owner}-{step}-{lock}");

            let data = format!("{tag}-acquired");
            Ledger::begin(ledger, &name, State::Held(data.clone()));
            let Ok(row) = client.query_one(
                "SELECT acquired, rvn FROM pglock_acquire($1, $2, '1 hour', $3::text::bytea, true)",
                &[&name, &owner, &data],
            ) else {
                return;
            };
            assert!(
                row.get::<_, bool>(0),
                "a worker's own free lock is acquired"
            );
            let rvn: i64 = row.get(1);
            Ledger::acknowledge(ledger, &name, rvn);

            let data = format!("{tag}-renewed");
            Ledger::begin(ledger, &name, State::Held(data.clone()));
            let Ok(row) = client.query_one(
                "SELECT pglock_heartbeat($1, $2, $3, $4::text::bytea)",
                &[&name, &owner, &rvn, &data],
            ) else {
                return;
            };
            let rvn: i64 = row.get(0);
            Ledger::acknowledge(ledger, &name, rvn);

            let keep = (step + lock) % 2 == 0;
            let data = format!("{tag}-released");
            let state = if keep {
                State::Released(data.clone())
            } else {
                State::Absent
            };
            Ledger::begin(ledger, &name, state);
            let data = keep.then_some(data);
            let Ok(row) = client.query_one(
                "SELECT pglock_release($1, $2, $3, $4, $5::text::bytea)",
                &[&name, &owner, &rvn, &keep, &data],
            ) else {
                return;
            };
            assert!(row.get::<_, bool>(0), "the holder releases");
            Ledger::acknowledge(ledger, &name, rvn);
        }
    }
}

#[test]
fn a_server_crash_under_load_loses_no_committed_lock() {
    let server = Server::create("crash", 54341, &["max_connections = 50"]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (client, ledger) = (server.client(), ledger.clone());
            thread::spawn(move || work(client, worker, &ledger))
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    server.crash();
    for worker in workers {
        worker.join().expect("worker");
    }
    server.start();

    let ledger = ledger.lock().unwrap().clone();
    let calls = ledger.acknowledged.len();
    eprintln!(
        "{calls} locks written before the crash, {} calls in flight",
        ledger.in_flight.len()
    );
    assert!(
        calls >= 8 * 20,
        "every worker wrote all its locks before the crash"
    );
    let mut client = server.client();
    for (name, acknowledged) in &ledger.acknowledged {
        let row = client
            .query_opt(
                "SELECT released, convert_from(data, 'UTF8') FROM pglock_get($1)",
                &[name],
            )
            .unwrap();
        let found = match row {
            None => State::Absent,
            Some(row) if row.get::<_, bool>(0) => State::Released(row.get(1)),
            Some(row) => State::Held(row.get(1)),
        };
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
}

#[test]
fn a_killed_holder_is_taken_over_only_after_its_rvn_stood_still_for_a_lease() {
    let name = unique_name("killed");
    let lease = Duration::from_millis(800);
    let mut holder = connect();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let held = acquire(&mut holder, &name, "holder", lease.as_secs_f64(), None).unwrap();
    let rvn = heartbeat(&mut holder, &name, "holder", held.rvn).unwrap();
    let last_heartbeat = Instant::now();
    let mut admin = connect();
    admin
        .execute("SELECT pg_terminate_backend($1, 5000)", &[&pid])
        .unwrap();
    assert!(
        holder.query_one("SELECT 1", &[]).is_err(),
        "the holder's connection is gone"
    );

    // The lock outlives the connection; a contender must still wait the lease.
    let mut contender = connect();
    let seen = acquire(&mut contender, &name, "contender", 60.0, None).unwrap();
    assert_eq!((seen.acquired, seen.rvn), (false, rvn));
    let claim = || acquire(&mut connect(), &name, "contender", 60.0, Some(rvn)).unwrap();
    thread::sleep(lease.saturating_sub(last_heartbeat.elapsed()));
    let taken = claim();
    assert!(taken.acquired && taken.rvn > rvn);
}

#[test]
fn a_heartbeat_whose_reply_is_lost_leaves_the_lock_whole_and_the_client_told() {
    let name = unique_name("lost-reply");
    let port: u16 = std::env::var("PGPORT").unwrap().parse().unwrap();
    let server_socket = std::env::var("PGHOST").unwrap();
    let proxy_dir = std::env::temp_dir().join(format!("pglock-proxy-{}", std::process::id()));
    let proxy = Proxy::start(&proxy_dir, server_socket.as_ref(), port);
    let connect_through_proxy = || {
        postgres::Config::new()
            .host_path(&proxy.socket_dir)
            .port(port)
            .user("postgres")
            .dbname(&std::env::var("PGLOCK_TEST_DB").unwrap())
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

    // Cancel a waiting takeover from a third session.
    let pid: i32 = other
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let canceller = thread::spawn(move || {
        let mut admin = connect();
        loop {
            let waiting: bool = admin
                .query_one(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if waiting {
                admin
                    .execute("SELECT pg_cancel_backend($1)", &[&pid])
                    .unwrap();
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    let attempt = acquire(&mut other, &name, "other", 60.0, Some(held.rvn));
    assert_eq!(sqlstate(attempt), SqlState::QUERY_CANCELED);
    canceller.join().unwrap();

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
