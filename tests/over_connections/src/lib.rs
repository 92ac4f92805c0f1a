//! Connections to the private PostgreSQL that `scripts/test.sh` starts, with
//! pglock installed in the database `PGLOCK_TEST_DB`, and the tests' ways of
//! waiting: every wait has a deadline that names what hung, and a thread that
//! fails makes its test fail at once (see [`wait`]).

pub mod proxy;
pub mod server;
pub mod wait;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use wait::{join, join_all, output_within, wait_for, Rendezvous, TerminateOnPanic, WAIT_LIMIT};

pub use postgres::error::SqlState;
pub use postgres::{Client, Error, NoTls};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run these tests through scripts/test.sh, which starts the server"
        )
    })
}

/// No statement of a test runs longer than this: one that hangs is cancelled with
/// "canceling statement due to statement timeout" instead of holding the test.
pub const STATEMENT_TIMEOUT: &str = "-c statement_timeout=60s";

/// The test database as `role`, for connecting later.
pub fn config_as(role: &str) -> postgres::Config {
    let mut config = postgres::Config::new();
    config
        .host_path(server_socket_dir())
        .port(server_port())
        .user(role)
        .dbname(&test_database())
        .application_name("pglock-tests")
        .options(STATEMENT_TIMEOUT);
    config
}

/// The test server's socket folder (`PGHOST`): for connections made with
/// another driver (the Rust client's tests, on tokio-postgres).
pub fn server_socket_dir() -> PathBuf {
    PathBuf::from(env("PGHOST"))
}

/// The test server's port (`PGPORT`).
pub fn server_port() -> u16 {
    env("PGPORT").parse().expect("PGPORT is a port number")
}

/// The database with pglock installed (`PGLOCK_TEST_DB`).
pub fn test_database() -> String {
    env("PGLOCK_TEST_DB")
}

/// A new connection as `role`.
pub fn connect_as(role: &str) -> Client {
    config_as(role)
        .connect(NoTls)
        .unwrap_or_else(|error| panic!("connect as {role}: {error}"))
}

/// A new connection as the superuser.
pub fn connect() -> Client {
    connect_as("postgres")
}

/// A lock name no other test uses, so tests can run side by side.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A login role, created once per name (one test at a time: tests running side
/// by side ask for the same roles), made a member of each of `member_of`.
pub fn login_role(role: &str, member_of: &[&str]) -> String {
    let grant = if member_of.is_empty() {
        String::new()
    } else {
        format!("GRANT {} TO {role};", member_of.join(", "))
    };
    connect()
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('pglock-tests roles'));
             DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN;
                 END IF;
             END $$;
             {grant}
             COMMIT;"
        ))
        .unwrap_or_else(|error| panic!("create role {role}: {error}"));
    role.to_owned()
}

/// A login role that may use pglock, created once per name.
pub fn pglock_role(role: &str) -> String {
    login_role(role, &["pglock_user"])
}

/// The row `pglock_acquire` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Acquire {
    pub acquired: bool,
    pub rvn: i64,
    pub owner: String,
    pub lease: Duration,
    pub data: Option<Vec<u8>>,
}

impl Acquire {
    /// From `acquired, rvn, owner, lease in seconds (float8), data`, in that order.
    fn from_row(row: &postgres::Row) -> Acquire {
        Acquire {
            acquired: row.get(0),
            rvn: row.get(1),
            owner: row.get(2),
            lease: Duration::from_secs_f64(row.get(3)),
            data: row.get(4),
        }
    }
}

pub fn acquire(
    client: &mut Client,
    name: &str,
    owner: &str,
    lease_seconds: f64,
    observed_rvn: Option<i64>,
) -> Result<Acquire, Error> {
    let row = client.query_one(
        "SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data \
           FROM pglock_acquire($1, $2, lease => make_interval(secs => $3), observed_rvn => $4)",
        &[&name, &owner, &lease_seconds, &observed_rvn],
    )?;
    Ok(Acquire::from_row(&row))
}

/// How long [`acquire_waiting`] tries before failing its test.
pub const ACQUIRE_WAITING_LIMIT: Duration = Duration::from_secs(120);

/// Acquire the way a real client does: poll every `poll`; once the holder's RVN
/// has stood still for the holder's whole lease, claim the lock with that RVN.
/// Panics if the lock is not acquired within [`ACQUIRE_WAITING_LIMIT`].
pub fn acquire_waiting(
    client: &mut Client,
    name: &str,
    owner: &str,
    lease: Duration,
    poll: Duration,
) -> Result<Acquire, Error> {
    let deadline = Instant::now() + ACQUIRE_WAITING_LIMIT;
    // The holder's RVN, when we first saw it, and the holder's lease.
    let mut watched: Option<(i64, Instant, Duration)> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "acquire_waiting: {owner} did not get {name} within {ACQUIRE_WAITING_LIMIT:?} \
             (last seen held at {watched:?})"
        );
        let observed = watched
            .filter(|(_, since, holder_lease)| since.elapsed() >= *holder_lease)
            .map(|(rvn, _, _)| rvn);
        let outcome = acquire(client, name, owner, lease.as_secs_f64(), observed)?;
        if outcome.acquired {
            return Ok(outcome);
        }
        if watched.map(|(rvn, _, _)| rvn) != Some(outcome.rvn) {
            watched = Some((outcome.rvn, Instant::now(), outcome.lease));
        }
        thread::sleep(poll);
    }
}

/// `pglock_acquire_wait`: the server waits, up to `wait_timeout` (None: forever).
pub fn acquire_wait(
    client: &mut Client,
    name: &str,
    owner: &str,
    lease: Duration,
    wait_timeout: Option<Duration>,
) -> Result<Acquire, Error> {
    let wait_seconds = wait_timeout.map(|wait| wait.as_secs_f64());
    let row = client.query_one(
        "SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data \
           FROM pglock_acquire_wait($1, $2, lease => make_interval(secs => $3), \
                wait_timeout => make_interval(secs => $4))",
        &[&name, &owner, &lease.as_secs_f64(), &wait_seconds],
    )?;
    Ok(Acquire::from_row(&row))
}

/// The lease the tests' owner "waiter" asks for: longer than the waits the
/// tests bound, so what it takes does not run out while a test looks at it.
pub const WAITER_LEASE: Duration = Duration::from_secs(5);

/// `pglock_acquire_wait` as the owner "waiter", for a [`WAITER_LEASE`], waiting
/// at most `wait_timeout`.
pub fn wait_as_waiter(
    client: &mut Client,
    name: &str,
    wait_timeout: Duration,
) -> Result<Acquire, Error> {
    acquire_wait(client, name, "waiter", WAITER_LEASE, Some(wait_timeout))
}

/// The backend pid of `client`'s connection.
pub fn backend_pid(client: &mut Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// How many name locks (pglock's advisory locks, tag 0x504c) backend `pid` holds.
pub fn name_locks_held(observer: &mut Client, pid: i32) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_locks \
              WHERE pid = $1 AND locktype = 'advisory' AND objsubid = 20556 AND granted",
            &[&pid],
        )
        .unwrap()
        .get(0)
}

/// Block until backend `pid` runs a statement containing `text` (at most
/// [`WAIT_LIMIT`]).
pub fn wait_until_running(observer: &mut Client, pid: i32, text: &str) {
    let pattern = format!("%{text}%");
    wait_for(
        &format!("backend {pid} running a statement with {text:?}"),
        WAIT_LIMIT,
        || {
            observer
                .query_opt(
                    "SELECT FROM pg_stat_activity \
                      WHERE pid = $1 AND state = 'active' AND query LIKE $2",
                    &[&pid, &pattern],
                )
                .unwrap()
                .is_some()
        },
    );
}

/// Block until backend `pid` sleeps in one of pglock's waits (`wait_event_type`
/// `Extension`: pglock's own event on PostgreSQL 17 and later), at most
/// [`WAIT_LIMIT`].
pub fn wait_until_asleep(observer: &mut Client, pid: i32) {
    wait_for(
        &format!("backend {pid} asleep in a pglock wait"),
        WAIT_LIMIT,
        || {
            observer
                .query_one(
                    "SELECT coalesce(bool_or(wait_event_type = 'Extension' AND state = 'active'), false) \
                       FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get(0)
        },
    );
}

/// Block until backend `pid` waits for a heavyweight lock (`wait_event_type` is
/// `Lock`; NULL while the backend runs) held by backend `holder` (at most
/// [`WAIT_LIMIT`]).
pub fn wait_until_blocked_by(observer: &mut Client, pid: i32, holder: i32) {
    wait_for(
        &format!("backend {pid} waiting for a lock held by backend {holder}"),
        WAIT_LIMIT,
        || {
            observer
                .query_one(
                    "SELECT coalesce(bool_or(a.wait_event_type = 'Lock' \
                                             AND $2 = ANY (pg_blocking_pids(a.pid))), false) \
                       FROM pg_stat_activity a WHERE a.pid = $1",
                    &[&pid, &holder],
                )
                .unwrap()
                .get(0)
        },
    );
}

pub fn heartbeat(client: &mut Client, name: &str, owner: &str, rvn: i64) -> Result<i64, Error> {
    Ok(client
        .query_one(
            "SELECT pglock_heartbeat($1, $2, $3)",
            &[&name, &owner, &rvn],
        )?
        .get(0))
}

pub fn release(
    client: &mut Client,
    name: &str,
    owner: &str,
    rvn: i64,
    keep: bool,
) -> Result<bool, Error> {
    let row = client.query_one(
        "SELECT pglock_release($1, $2, $3, keep => $4)",
        &[&name, &owner, &rvn, &keep],
    )?;
    Ok(row.get(0))
}

/// Release with `keep => true`, storing `data`.
pub fn release_keeping(
    client: &mut Client,
    name: &str,
    owner: &str,
    rvn: i64,
    data: &[u8],
) -> Result<bool, Error> {
    let row = client.query_one(
        "SELECT pglock_release($1, $2, $3, keep => true, data => $4)",
        &[&name, &owner, &rvn, &data],
    )?;
    Ok(row.get(0))
}

/// A call ended by `pg_cancel_backend` (not by a statement or lock timeout, whose
/// SQLSTATE is the same or close).
pub fn assert_cancelled_by_request<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    let error = result.expect_err(what);
    let message = error
        .as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_default();
    assert_eq!(
        (error.code(), message.as_str()),
        (
            Some(&SqlState::QUERY_CANCELED),
            "canceling statement due to user request"
        ),
        "{what}: {error}"
    );
}

/// The SQLSTATE of a failed call.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, Error>) -> SqlState {
    let error = result.expect_err("the call must fail");
    error
        .code()
        .cloned()
        .unwrap_or_else(|| panic!("no SQLSTATE in {error}"))
}
