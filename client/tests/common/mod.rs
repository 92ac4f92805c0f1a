//! Connections to the private PostgreSQL that `scripts/test.sh` starts (PGHOST is
//! its socket folder, PGPORT its port), with pglock installed in `PGLOCK_TEST_DB`.
#![allow(dead_code)]

pub mod pgbouncer;
pub mod server;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pglock_client::{Client, ClientConfig};
pub use pglock_tests::WAIT_LIMIT;
use pglock_tests::{server_port, server_socket_dir, test_database, STATEMENT_TIMEOUT};

/// The test database, as the superuser, with `application_name` set to `app`.
pub fn pg_config(app: &str) -> tokio_postgres::Config {
    pg_config_for(&test_database(), app)
}

/// Database `dbname` of the test server, as the superuser.
pub fn pg_config_for(dbname: &str, app: &str) -> tokio_postgres::Config {
    superuser_config(server_socket_dir(), server_port(), dbname, app)
}

/// Database `dbname` as the superuser, at the server whose socket folder is
/// `socket_dir` and port `port`, with `application_name` = `app`, under the
/// extension's tests' guard ([`STATEMENT_TIMEOUT`]): a statement that hangs is
/// cancelled after a minute instead of holding its test.
pub fn superuser_config(
    socket_dir: impl AsRef<Path>,
    port: u16,
    dbname: &str,
    app: &str,
) -> tokio_postgres::Config {
    let mut config = superuser_config_unguarded(socket_dir, port, dbname, app);
    config.options(STATEMENT_TIMEOUT);
    config
}

/// [`superuser_config`] without the guard, for a pooler: PgBouncer refuses an
/// `options` parameter, and sets the guard on its server connections instead.
pub fn superuser_config_unguarded(
    socket_dir: impl AsRef<Path>,
    port: u16,
    dbname: &str,
    app: &str,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user("postgres")
        .dbname(dbname)
        .application_name(app);
    config
}

/// A plain connection as the superuser, for what tests do behind a client's back.
pub async fn superuser() -> tokio_postgres::Client {
    let (pg, connection) = pg_config("pglock-client-tests")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect as the superuser");
    tokio::spawn(connection);
    pg
}

/// A client `owner` on its own connection (`application_name` = `owner`).
pub async fn client(owner: &str, lease: Duration, period: Duration) -> Client {
    client_with(ClientConfig::new(owner, lease, period)).await
}

pub async fn client_with(config: ClientConfig) -> Client {
    Client::connect(&pg_config(config.owner()), config)
        .await
        .expect("connect a pglock client")
}

/// A client `owner` on a connection opened here ([`Client::new`]): it cannot
/// reconnect, so once its connection is killed every heartbeat fails.
pub async fn client_without_reconnect(owner: &str, lease: Duration, period: Duration) -> Client {
    let (pg, connection) = pg_config(owner)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    Client::new(pg, ClientConfig::new(owner, lease, period))
        .await
        .expect("a pglock client on its own connection")
}

/// A name no other test (or earlier run) uses: tests run side by side. The
/// extension's tests' names, marked as the client's.
pub fn unique(prefix: &str) -> String {
    pglock_tests::unique_name(&format!("client-{prefix}"))
}

/// Ends the server session of the client whose `application_name` is `app`, as if
/// its connection broke.
pub async fn kill_connection(app: &str) {
    let killed: i64 = superuser()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
              WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("terminate the client's backend")
        .get(0);
    // Its own connection, and those it waits on in the server, if any.
    assert!(killed >= 1, "a backend runs as {app}");
}

/// Moves the lock's RVN on, as a rival's takeover would.
pub async fn bump_rvn(name: &str) {
    let updated = superuser()
        .await
        .execute(
            "UPDATE pglock.locks SET rvn = nextval('pglock.rvn_seq') WHERE name = $1",
            &[&name],
        )
        .await
        .expect("move the RVN on");
    assert_eq!(updated, 1, "lock {name} exists");
}

pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// `future`'s output, or a panic naming `what` if it takes longer than `limit`:
/// a wait that goes wrong fails its test instead of hanging it.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Every worker's result, in order; the first worker to fail fails the test at
/// once, without waiting for the others.
pub async fn join_failing_fast<T: Send + 'static>(
    workers: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut set = tokio::task::JoinSet::new();
    for (index, worker) in workers.into_iter().enumerate() {
        set.spawn(async move { (index, worker.await) });
    }
    let mut results = Vec::new();
    while let Some(joined) = within(WAIT_LIMIT * 4, "the workers", set.join_next()).await {
        let (index, result) = joined.expect("joining a worker");
        match result {
            Ok(value) => results.push((index, value)),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("worker {index}: {error}"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, value)| value).collect()
}

/// One worker of a counter kept in lock `name`'s data, `rounds` times: acquire
/// the lock, check that no other worker is `inside`, read the count and write it
/// back plus one with a keeping release. Each count read, with the fencing token
/// it was read under.
pub async fn increment_counter(
    client: &Client,
    name: &str,
    rounds: u64,
    inside: &AtomicUsize,
) -> Vec<(u64, i64)> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let lock = within(WAIT_LIMIT, "the lock", client.acquire(name))
            .await
            .unwrap_or_else(|error| panic!("acquire: {error}"));
        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
        let count: u64 = match lock.data() {
            None => 0,
            Some(data) => std::str::from_utf8(data).unwrap().parse().unwrap(),
        };
        seen.push((count, lock.rvn()));
        tokio::task::yield_now().await;
        assert!(!lock.is_lost(), "lost while holding it briefly");
        inside.fetch_sub(1, Ordering::SeqCst);
        let next = (count + 1).to_string();
        lock.release_keeping(Some(next.as_bytes()))
            .await
            .unwrap_or_else(|error| panic!("release keeping the count: {error}"));
    }
    seen
}

/// What [`increment_counter`]'s workers read, together: every count from 0 to
/// `total` once, and fencing tokens that grow with the count.
pub fn assert_each_count_read_once(mut seen: Vec<(u64, i64)>, total: u64) {
    seen.sort();
    let counts: Vec<u64> = seen.iter().map(|(count, _)| *count).collect();
    assert_eq!(
        counts,
        (0..total).collect::<Vec<_>>(),
        "each count read once"
    );
    assert!(
        seen.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "fencing tokens grow with the count: {seen:?}"
    );
}

/// A database of the test server's for one test alone, made afresh (dropped
/// first if an earlier run left it) with pglock created in it and `settings`
/// (e.g. `track_functions = 'all'`) set for every session that connects to it:
/// for tests that read database-wide statistics. `name` is the test's own constant.
pub async fn fresh_database(name: &str, settings: &[&str]) -> String {
    let admin = superuser().await;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    for statement in [
        format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        format!("CREATE DATABASE {quoted}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    for setting in settings {
        let statement = format!("ALTER DATABASE {quoted} SET {setting}");
        admin
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let (pg, connection) = pg_config_for(name, "pglock-client-tests")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the fresh database");
    tokio::spawn(connection);
    pg.batch_execute("CREATE EXTENSION pglock")
        .await
        .expect("create pglock in the fresh database");
    name.to_owned()
}
