//! Connections to the private PostgreSQL that `scripts/test.sh` starts (PGHOST is
//! its socket folder, PGPORT its port), with pglock installed in `PGLOCK_TEST_DB`.
//!
//! Every test binary compiles this module (`mod common;`). What only some of
//! them need lives beside it, each compiled by the binaries that use it all
//! (`#[path = "common/NAME.rs"] mod NAME;`): `server` (servers of a test's
//! own), `pgbouncer`, `counter` (workers keeping a counter in a lock) and
//! `database` (a database of a test's own). The helpers here that a few
//! binaries do without say so with an `allow(dead_code)` of their own.

use std::future::Future;
use std::path::Path;
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
#[allow(dead_code, reason = "some test binaries do without it")]
pub async fn superuser() -> tokio_postgres::Client {
    let (pg, connection) = pg_config("pglock-client-tests")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect as the superuser");
    tokio::spawn(connection);
    pg
}

/// A client `owner` on its own connection (`application_name` = `owner`).
#[allow(dead_code, reason = "some test binaries do without it")]
pub async fn client(owner: &str, lease: Duration, period: Duration) -> Client {
    client_with(ClientConfig::new(owner, lease, period)).await
}

#[allow(dead_code, reason = "some test binaries do without it")]
pub async fn client_with(config: ClientConfig) -> Client {
    Client::connect(&pg_config(config.owner()), config)
        .await
        .expect("connect a pglock client")
}

/// A client `owner` on a connection opened here ([`Client::new`]): it cannot
/// reconnect, so once its connection is killed every heartbeat fails.
#[allow(dead_code, reason = "some test binaries do without it")]
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
#[allow(dead_code, reason = "some test binaries do without it")]
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
#[allow(dead_code, reason = "some test binaries do without it")]
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
#[allow(dead_code, reason = "some test binaries do without it")]
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Every worker's result, in order; the first worker to fail fails the test at
/// once, without waiting for the others.
#[allow(dead_code, reason = "some test binaries do without it")]
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
