//! One renewer per client: every lock the client holds is renewed by one
//! `pglock_heartbeat_many` call per period, not one heartbeat per lock, and each
//! lock still keeps, loses and releases on its own.

mod common;
#[path = "common/database.rs"]
mod database;

use common::{
    bump_rvn, client, client_without_reconnect, ms, pg_config_for, superuser, unique, within,
    WAIT_LIMIT,
};
use database::fresh_database;
use pglock_client::{Client, ClientConfig, Error, Lock, LostReason};
use tokio::time::{sleep, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// Waits until every lock's RVN has moved on from the one in `from` (a renewal
/// got through for each), or fails the test.
async fn all_renewed(locks: &[Lock], from: &[i64]) {
    within(WAIT_LIMIT, "a renewal of every lock", async {
        while locks.iter().zip(from).any(|(lock, rvn)| lock.rvn() == *rvn) {
            assert!(
                locks.iter().all(|lock| !lock.is_lost()),
                "a lock was lost: {:?}",
                locks.iter().find_map(|lock| lock.lost_reason())
            );
            sleep(ms(20)).await;
        }
    })
    .await;
}

fn rvns(locks: &[Lock]) -> Vec<i64> {
    locks.iter().map(Lock::rvn).collect()
}

/// Waits until no session of application `app` is left on the server: a
/// backend's function statistics are flushed before it leaves
/// `pg_stat_activity`.
async fn sessions_gone(app: &str) {
    wait_for_count(
        &superuser().await,
        "the client's session to end",
        0,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .await;
}

/// Polls `count_query` (a `SELECT count(*)` with `params`) until it gives
/// `wanted`, or fails the test naming `what`.
async fn wait_for_count(
    probe: &tokio_postgres::Client,
    what: &str,
    wanted: i64,
    count_query: &str,
    params: &[&(dyn ToSql + Sync)],
) {
    within(WAIT_LIMIT, what, async {
        loop {
            let count: i64 = probe
                .query_one(count_query, params)
                .await
                .unwrap_or_else(|error| panic!("{count_query}: {error}"))
                .get(0);
            if count == wanted {
                return;
            }
            sleep(ms(20)).await;
        }
    })
    .await;
}

/// Calls of `pglock_heartbeat` and of `pglock_heartbeat_many` in `database`.
async fn heartbeat_calls(database: &str) -> (i64, i64) {
    let (pg, connection) = pg_config_for(database, "pglock-client-tests")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test's database");
    tokio::spawn(connection);
    let row = pg
        .query_one(
            "SELECT coalesce(sum(calls) FILTER (WHERE funcname = 'pglock_heartbeat'), 0)::bigint, \
                    coalesce(sum(calls) FILTER (WHERE funcname = 'pglock_heartbeat_many'), 0)::bigint \
               FROM pg_stat_user_functions",
            &[],
        )
        .await
        .expect("read pg_stat_user_functions");
    (row.get(0), row.get(1))
}

/// 200 locks held for several periods: none lost, every RVN moved on, and the
/// server saw no `pglock_heartbeat` at all and about one `pglock_heartbeat_many`
/// per period (batches are at least half a period apart), where one heartbeat
/// per lock would have made 200 calls a period. Counted in a database of the
/// test's own with `track_functions = 'all'`.
#[tokio::test]
async fn one_call_per_period_renews_every_lock_a_client_holds() {
    const LOCKS: usize = 200;
    let database = fresh_database("pglock_client_renewal", &["track_functions = 'all'"]).await;
    let owner = unique("many");
    let period = ms(1_000);
    let config = ClientConfig::new(owner.as_str(), ms(10_000), period);
    let client = Client::connect(&pg_config_for(&database, &owner), config)
        .await
        .expect("connect a pglock client");

    let started = Instant::now();
    let mut locks = Vec::with_capacity(LOCKS);
    for index in 0..LOCKS {
        let name = format!("{owner}-{index}");
        locks.push(
            client
                .try_acquire(&name)
                .await
                .unwrap()
                .into_lock()
                .expect("a free lock"),
        );
    }
    let first = rvns(&locks);
    // Several periods, each lock renewed at least twice.
    all_renewed(&locks, &first).await;
    let second = rvns(&locks);
    all_renewed(&locks, &second).await;
    sleep(3 * period).await;
    for lock in &locks {
        assert!(!lock.is_lost(), "{}: {:?}", lock.name(), lock.lost_reason());
    }
    for lock in locks {
        lock.release().await.expect("still ours: released");
    }
    let held_for = started.elapsed();
    drop(client);
    sessions_gone(&owner).await;

    let (single, many) = heartbeat_calls(&database).await;
    let periods = held_for.as_secs_f64() / period.as_secs_f64();
    println!("{LOCKS} locks held {periods:.1} periods: {many} calls of pglock_heartbeat_many, {single} of pglock_heartbeat");
    assert_eq!(single, 0, "pglock_heartbeat was called");
    assert!(many >= 2, "pglock_heartbeat_many called {many} times");
    assert!(
        (many as f64) <= 2.0 * periods + 2.0,
        "{many} calls of pglock_heartbeat_many in {periods:.1} periods"
    );
    assert!(
        (many as f64) * 10.0 < LOCKS as f64 * periods,
        "{many} calls for {LOCKS} locks over {periods:.1} periods"
    );
}

/// The client runs one renewer task whatever it holds, keeps renewing after the
/// `Client` itself is dropped while its locks live, and leaves no task behind
/// once its last lock and its last clone are gone.
#[tokio::test]
async fn one_renewer_task_per_client_and_none_left_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let owner = unique("tasks");
    let client = client(&owner, ms(5_000), ms(250)).await;
    let idle = metrics.num_alive_tasks();
    let mut locks = Vec::new();
    for index in 0..20 {
        locks.push(client.acquire(&format!("{owner}-{index}")).await.unwrap());
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        idle + 1,
        "one renewer task for 20 locks"
    );

    drop(client);
    let first = rvns(&locks);
    all_renewed(&locks, &first).await;
    assert_eq!(metrics.num_alive_tasks(), idle + 1);

    let last = locks.pop().expect("20 locks");
    drop(locks);
    last.release().await.expect("released");
    within(WAIT_LIMIT, "every task of the client to end", async {
        while metrics.num_alive_tasks() > 0 {
            sleep(ms(20)).await;
        }
    })
    .await;
}

/// One lock of ten is taken over (its RVN moved on by a rival) and another one
/// force-released by an operator: the batch reports exactly those two lost
/// (`NotHeld`), and the eight others are renewed on and released as ours.
#[tokio::test]
async fn a_lock_taken_from_the_client_is_lost_alone() {
    let owner = unique("some-lost");
    let client = client(&owner, ms(5_000), ms(200)).await;
    let mut locks = Vec::new();
    for index in 0..10 {
        locks.push(client.acquire(&format!("{owner}-{index}")).await.unwrap());
    }
    let taken = locks.remove(3);
    let removed = locks.remove(6);
    bump_rvn(taken.name()).await;
    let forced: bool = superuser()
        .await
        .query_one("SELECT pglock_force_release($1)", &[&removed.name()])
        .await
        .expect("force-release the lock")
        .get(0);
    assert!(forced);

    within(WAIT_LIMIT, "the two losses", async {
        taken.lost().await;
        removed.lost().await;
    })
    .await;
    assert_eq!(taken.lost_reason(), Some(LostReason::NotHeld));
    assert_eq!(removed.lost_reason(), Some(LostReason::NotHeld));

    let after = rvns(&locks);
    all_renewed(&locks, &after).await;
    for lock in locks {
        lock.release().await.expect("still ours: released");
    }
    for lost in [taken, removed] {
        let released = lost.release().await;
        assert!(
            matches!(
                released,
                Err(Error::LockLost {
                    reason: LostReason::NotHeld,
                    ..
                })
            ),
            "{released:?}"
        );
    }
}

/// Releasing a lock while a batch that renewed it is still in flight: the
/// release waits for the batch and releases with the RVN it wrote. The batch is
/// held in flight by a row lock on another of the client's locks; the lock
/// released is one the batch has already renewed in its open transaction (its
/// row is locked), so a release with the RVN from before the batch would fail.
#[tokio::test]
async fn release_during_a_batch_in_flight_uses_the_batchs_rvn() {
    let owner = unique("in-flight");
    // Calls are abandoned after a period: long enough for the test's steps
    // while the batch is held up.
    let client = client(&owner, ms(30_000), ms(3_000)).await;
    let mut locks = Vec::new();
    for index in 0..8 {
        locks.push(client.acquire(&format!("{owner}-{index}")).await.unwrap());
    }
    let blocker = superuser().await;
    let probe = superuser().await;
    for round in 0..locks.len() {
        let blocked = locks[round].name().to_owned();
        blocker.batch_execute("BEGIN").await.unwrap();
        blocker
            .execute(
                "SELECT 1 FROM pglock.locks WHERE name = $1 FOR UPDATE",
                &[&blocked],
            )
            .await
            .unwrap();
        // The next batch comes and waits for that row.
        wait_for_count(
            &probe,
            "the batch to wait for the row lock",
            1,
            "SELECT count(*) FROM pg_stat_activity \
              WHERE application_name = $1 AND wait_event_type = 'Lock'",
            &[&owner],
        )
        .await;
        // A lock whose row the batch has renewed and not yet committed.
        let mut renewed_in_flight = None;
        for (index, lock) in locks.iter().enumerate() {
            if index == round {
                continue;
            }
            let locked = probe
                .execute(
                    "SELECT 1 FROM pglock.locks WHERE name = $1 FOR UPDATE NOWAIT",
                    &[&lock.name()],
                )
                .await;
            if let Err(error) = locked {
                assert_eq!(error.code(), Some(&SqlState::LOCK_NOT_AVAILABLE), "{error}");
                renewed_in_flight = Some(index);
                break;
            }
        }
        let Some(index) = renewed_in_flight else {
            // The blocked lock comes first in the batch's order: try another.
            blocker.batch_execute("COMMIT").await.unwrap();
            continue;
        };
        let lock = locks.remove(index);
        let name = lock.name().to_owned();
        let releasing = tokio::spawn(lock.release());
        sleep(ms(100)).await;
        blocker.batch_execute("COMMIT").await.unwrap();
        within(WAIT_LIMIT, "the release", releasing)
            .await
            .expect("the release task")
            .expect("released with the RVN the batch wrote");
        assert_eq!(client.get(&name).await.unwrap(), None, "released");
        let others = rvns(&locks);
        all_renewed(&locks, &others).await;
        for lock in locks {
            lock.release().await.expect("still ours: released");
        }
        return;
    }
    panic!("no batch renewed a lock before the blocked one");
}

/// The backend of the first statement of application `app` waiting on a lock:
/// its pid and when that statement started.
async fn blocked_statement(probe: &tokio_postgres::Client, app: &str) -> (i32, String) {
    within(WAIT_LIMIT, "a renewal to wait for the row lock", async {
        loop {
            let row = probe
                .query_opt(
                    "SELECT pid, query_start::text FROM pg_stat_activity \
                      WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&app],
                )
                .await
                .expect("read pg_stat_activity");
            if let Some(row) = row {
                return (row.get(0), row.get(1));
            }
            sleep(ms(20)).await;
        }
    })
    .await
}

/// A renewal held up in the server past its time limit (a row lock, as a
/// fencing transaction would hold): once the client abandons it, its statement
/// stops in the server too, while the blocker still holds the row, rather than
/// going on to renew (and commit RVNs nobody knows) once the blocker ends. The
/// client then renews every lock as usual.
async fn an_abandoned_renewal_stops_in_the_server(client: Client, owner: &str) {
    let mut locks = Vec::new();
    for index in 0..3 {
        locks.push(client.acquire(&format!("{owner}-{index}")).await.unwrap());
    }
    let blocker = superuser().await;
    let probe = superuser().await;
    blocker.batch_execute("BEGIN").await.unwrap();
    blocker
        .execute(
            "SELECT 1 FROM pglock.locks WHERE name = $1 FOR UPDATE",
            &[&locks[0].name()],
        )
        .await
        .unwrap();
    let (pid, started) = blocked_statement(&probe, owner).await;
    wait_for_count(
        &probe,
        "the abandoned statement to stop",
        0,
        "SELECT count(*) FROM pg_stat_activity \
          WHERE pid = $1 AND query_start::text = $2 AND state = 'active'",
        &[&pid, &started],
    )
    .await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let before = rvns(&locks);
    all_renewed(&locks, &before).await;
    for lock in locks {
        lock.release().await.expect("still ours: released");
    }
}

#[tokio::test]
async fn an_abandoned_renewal_stops_in_the_server_on_a_connection_it_reopens() {
    let owner = unique("cancel");
    // Renewals are abandoned after a period; the lease leaves the locks safe
    // for far longer than the test holds the row.
    let client = client(&owner, ms(30_000), ms(1_000)).await;
    an_abandoned_renewal_stops_in_the_server(client, &owner).await;
}

#[tokio::test]
async fn an_abandoned_renewal_stops_in_the_server_on_a_connection_given() {
    let owner = unique("cancel-given");
    let client = client_without_reconnect(&owner, ms(30_000), ms(1_000)).await;
    an_abandoned_renewal_stops_in_the_server(client, &owner).await;
}
