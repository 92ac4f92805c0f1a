//! The client behind PgBouncer 1.18 in transaction pooling mode, with fewer server
//! connections than clients: each call may run on a different server connection,
//! and a lease is not a session. Configured for it (unnamed statements), all
//! works; left at the default, a client fails with an error that says why.

mod common;
#[path = "common/counter.rs"]
mod counter;
#[path = "common/pgbouncer.rs"]
mod pgbouncer;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use common::{join_failing_fast, ms, superuser, unique, within, WAIT_LIMIT};
use counter::{assert_each_count_read_once, increment_counter};
use pgbouncer::{PgBouncer, POOL_SIZE};
use pglock_client::{Client, ClientConfig, Error, StatementMode};
use tokio::time::{sleep, Instant};
use tokio_postgres::error::SqlState;

const CLIENTS: usize = 16;
const ROUNDS: u64 = 5;

/// A client through `pgbouncer`, configured as the crate docs say for a pooler
/// in transaction mode.
async fn client_through(pgbouncer: &PgBouncer, config: ClientConfig) -> Client {
    let config = config.with_statements(StatementMode::Unnamed);
    Client::connect(&pgbouncer.pg_config(config.owner()), config)
        .await
        .expect("connect a pglock client through PgBouncer")
}

/// Sixteen clients through a pool of four server connections take turns on one
/// lock, keeping a counter in its data: never two holders at once, no increment
/// lost, fencing tokens growing with the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_through_a_pool_of_four_never_hold_one_lock_at_once() {
    const { assert!(CLIENTS >= 3 * POOL_SIZE) };
    let pgbouncer = Arc::new(PgBouncer::start("contention", 55465).await);
    let name = unique("pooled-counter");
    let inside = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let (pgbouncer, name, inside) = (Arc::clone(&pgbouncer), name.clone(), Arc::clone(&inside));
        workers.push(tokio::spawn(async move {
            let owner = unique(&format!("pooled-{worker}"));
            let config = ClientConfig::new(owner, ms(5_000), ms(1_000)).with_poll_interval(ms(10));
            let client = client_through(&pgbouncer, config).await;
            increment_counter(&client, &name, ROUNDS, &inside).await
        }));
    }
    let seen: Vec<(u64, i64)> = join_failing_fast(workers)
        .await
        .into_iter()
        .flatten()
        .collect();

    let total = CLIENTS as u64 * ROUNDS;
    let config = ClientConfig::new(unique("reader"), ms(5_000), ms(1_000));
    let reader = client_through(&pgbouncer, config).await;
    let info = reader.get(&name).await.unwrap().expect("the lock is kept");
    assert_eq!(info.data, Some(total.to_string().into_bytes()));
    assert_each_count_read_once(seen, total);
}

/// The pooler restarts under a held lock: the client's connection breaks, the
/// client connects again through the new PgBouncer, and its next heartbeat keeps
/// the lock, which the server still has at the lock's RVN.
#[tokio::test]
async fn a_lock_survives_its_holders_reconnect_through_pgbouncer() {
    let pgbouncer = PgBouncer::start("reconnect", 55466).await;
    let lease = Duration::from_secs(20);
    let config = ClientConfig::new(unique("pooled-holder"), lease, ms(500));
    let client = client_through(&pgbouncer, config).await;
    let name = unique("pooled-kept");
    let lock = client
        .acquire(&name)
        .await
        .expect("acquire through PgBouncer");
    let restarted = Instant::now();
    pgbouncer.restart().await;
    let rvn = lock.rvn();
    while lock.rvn() == rvn && !lock.is_lost() {
        assert!(
            restarted.elapsed() < lease,
            "no heartbeat and no loss in a lease"
        );
        sleep(ms(50)).await;
    }
    assert!(!lock.is_lost(), "{:?}", lock.lost_reason());
    assert!(client.reconnects() >= 1, "the client reconnected");
    let before = lock.rvn();
    let row = superuser()
        .await
        .query_one(
            "SELECT owner, rvn FROM pglock.locks WHERE name = $1",
            &[&name],
        )
        .await
        .expect("the server still has the lock");
    let (owner, server_rvn): (String, i64) = (row.get(0), row.get(1));
    assert_eq!(owner, lock.owner());
    assert!(
        server_rvn == before || server_rvn == lock.rvn(),
        "server {server_rvn}, lock {before}"
    );
    lock.release()
        .await
        .expect("still ours: released through the new PgBouncer");
}

/// Eight clients through the pool of four, each holding 40 locks: each client's
/// renewer sends its locks' names and RVNs as `text[]` and `bigint[]` in unnamed
/// statements, and every lock is renewed twice, none lost, all released as ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_holding_many_locks_renew_them_through_pgbouncer() {
    const HOLDERS: usize = 8;
    const LOCKS: usize = 40;
    let pgbouncer = Arc::new(PgBouncer::start("many", 55469).await);
    let mut workers = Vec::new();
    for worker in 0..HOLDERS {
        let pgbouncer = Arc::clone(&pgbouncer);
        workers.push(tokio::spawn(async move {
            let owner = unique(&format!("pooled-many-{worker}"));
            let config = ClientConfig::new(owner.as_str(), ms(5_000), ms(300));
            let client = client_through(&pgbouncer, config).await;
            let mut locks = Vec::new();
            for index in 0..LOCKS {
                let lock = within(
                    WAIT_LIMIT,
                    "a lock",
                    client.acquire(&format!("{owner}-{index}")),
                )
                .await
                .unwrap_or_else(|error| panic!("acquire through PgBouncer: {error}"));
                locks.push(lock);
            }
            for _ in 0..2 {
                let from: Vec<i64> = locks.iter().map(|lock| lock.rvn()).collect();
                within(WAIT_LIMIT, "a renewal of every lock", async {
                    while locks
                        .iter()
                        .zip(&from)
                        .any(|(lock, rvn)| lock.rvn() == *rvn)
                    {
                        let lost = locks.iter().find_map(|lock| lock.lost_reason());
                        assert!(lost.is_none(), "a lock was lost: {lost:?}");
                        sleep(ms(20)).await;
                    }
                })
                .await;
            }
            for lock in locks {
                lock.release()
                    .await
                    .unwrap_or_else(|error| panic!("release through PgBouncer: {error}"));
            }
        }));
    }
    join_failing_fast(workers).await;
}

fn stdout_of(output: std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("psql prints UTF-8")
        .trim()
        .to_owned()
}

/// psql through the pooler: acquire, heartbeat and release, and the committing
/// waiting procedure, both by CALL and from a DO block, taking the lock once its
/// holder (another psql) releases it. Lock names are the test's own (no quoting
/// needed).
#[tokio::test]
async fn psql_calls_and_the_committing_procedure_work_through_pgbouncer() {
    let pgbouncer = Arc::new(PgBouncer::start("psql", 55467).await);
    let name = unique("psql");
    let psql = |commands: Vec<String>, what: &'static str| {
        let pgbouncer = Arc::clone(&pgbouncer);
        async move {
            let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
            stdout_of(pgbouncer.psql(&commands).await, what)
        }
    };
    // PgBouncer's server connections run under the tests' guard.
    let guard = psql(vec!["SHOW statement_timeout".to_owned()], "the guard").await;
    assert_eq!(guard, "1min");
    let acquire = format!("SELECT rvn FROM pglock_acquire('{name}', 'psql-1', '30 seconds')");
    let rvn: i64 = psql(vec![acquire], "acquire").await.parse().unwrap();
    let heartbeat = format!("SELECT pglock_heartbeat('{name}', 'psql-1', {rvn})");
    let renewed: i64 = psql(vec![heartbeat], "heartbeat").await.parse().unwrap();
    assert!(renewed > rvn);

    // A waiter by CALL while psql-1 holds the lock; psql-1 releases a second later.
    let call = format!(
        "CALL pglock_acquire_wait_committing('{name}', 'psql-2', '30 seconds', \
         wait_timeout => '20 seconds')"
    );
    let started = Instant::now();
    let waiting = tokio::spawn(psql(vec![call], "CALL pglock_acquire_wait_committing"));
    sleep(ms(1_000)).await;
    let release = format!("SELECT pglock_release('{name}', 'psql-1', {renewed})");
    assert_eq!(psql(vec![release], "release").await, "t");
    let row = within(WAIT_LIMIT, "the waiting CALL", waiting)
        .await
        .expect("the waiting psql");
    let waited = started.elapsed();
    let (acquired, waiter_rvn) = row.split_once('|').expect("acquired|rvn");
    assert_eq!(acquired, "t", "the CALL took the released lock");
    let waiter_rvn: i64 = waiter_rvn.parse().unwrap();
    assert!(waiter_rvn > renewed);
    assert!(waited >= ms(1_000), "it waited for the release: {waited:?}");

    // The same from PL/pgSQL, once psql-2 releases.
    let release = format!("SELECT pglock_release('{name}', 'psql-2', {waiter_rvn})");
    let do_block = format!(
        "DO $$ DECLARE got boolean; token bigint; BEGIN \
           CALL pglock_acquire_wait_committing('{name}', 'psql-3', '30 seconds', \
                wait_timeout => '5 seconds', acquired => got, rvn => token); \
           IF NOT got THEN RAISE EXCEPTION 'not acquired'; END IF; \
           PERFORM pglock_release('{name}', 'psql-3', token); \
         END $$"
    );
    let gone = format!("SELECT count(*) FROM pglock_get('{name}')");
    let output = psql(vec![release, do_block, gone], "DO block").await;
    assert_eq!(
        output, "t\n0",
        "released by psql-2, taken and released by the DO block"
    );
}

/// Errors through the pooler read as the server (or the pooler) wrote them:
/// severity, SQLSTATE, message.
#[tokio::test]
async fn errors_through_pgbouncer_carry_the_servers_message_and_sqlstate() {
    let pgbouncer = PgBouncer::start("errors", 55468).await;
    let config = ClientConfig::new(unique("pooled-errors"), ms(5_000), ms(1_000));
    let client = client_through(&pgbouncer, config).await;
    let error = client.try_acquire("").await.expect_err("an empty name");
    assert_eq!(error.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    assert_eq!(
        error.to_string(),
        "database error: ERROR 22023: pglock: name must not be empty"
    );

    // PgBouncer's own refusal, at connect.
    let mut nowhere = pgbouncer.pg_config("pooled-errors");
    nowhere.dbname("no_such_database");
    let config = ClientConfig::new("w", ms(5_000), ms(1_000));
    let error = Client::connect(&nowhere, config.with_statements(StatementMode::Unnamed))
        .await
        .expect_err("PgBouncer knows no such database");
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("database error: FATAL 08P01: ") && text.contains("no_such_database"),
        "{text}"
    );
}

/// Twelve clients left at the default, named prepared statements, through the
/// pool of four: PgBouncer 1.18 in transaction mode hands each call any server
/// connection, where a client's statement is missing (or another's is in the
/// way), and the error a client gets says so and names the setting to use.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn named_statements_through_pgbouncer_fail_naming_the_setting_to_use() {
    const DEFAULT_CLIENTS: usize = 12;
    const ROUNDS: usize = 20;
    let pgbouncer = Arc::new(PgBouncer::start("named", 55470).await);
    let mut workers = Vec::new();
    for worker in 0..DEFAULT_CLIENTS {
        let pgbouncer = Arc::clone(&pgbouncer);
        workers.push(tokio::spawn(async move {
            let owner = unique(&format!("named-{worker}"));
            let config = ClientConfig::new(owner.as_str(), ms(5_000), ms(1_000));
            // The client's first error, connecting or calling; its lock is its own.
            let client = match Client::connect(&pgbouncer.pg_config(&owner), config).await {
                Ok(client) => client,
                Err(error) => return Some(error),
            };
            for _ in 0..ROUNDS {
                let released = match client.acquire(&owner).await {
                    Ok(lock) => lock.release().await,
                    Err(error) => Err(error),
                };
                if let Err(error) = released {
                    return Some(error);
                }
            }
            None
        }));
    }
    let errors: Vec<Error> = join_failing_fast(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        !errors.is_empty(),
        "{DEFAULT_CLIENTS} clients, {ROUNDS} rounds each, and none failed"
    );
    for error in &errors {
        assert!(matches!(error, Error::StatementsNotKept(_)), "{error:?}");
        let code = error.code().expect("the server's SQLSTATE");
        assert!(
            [
                SqlState::INVALID_SQL_STATEMENT_NAME,
                SqlState::DUPLICATE_PSTATEMENT
            ]
            .contains(code),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("PgBouncer with pool_mode = transaction")
                && text.contains("ClientConfig::with_statements(StatementMode::Unnamed)"),
            "{text}"
        );
    }
}
