//! Connections to the private PostgreSQL that `scripts/test.sh` starts, with
//! pglock installed in the database `PGLOCK_TEST_DB`.

pub mod proxy;
pub mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use postgres::error::SqlState;
pub use postgres::{Client, Error, NoTls};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run these tests through scripts/test.sh, which starts the server"
        )
    })
}

/// A new connection as `role`.
pub fn connect_as(role: &str) -> Client {
    let port = env("PGPORT").parse().expect("PGPORT is a port number");
    postgres::Config::new()
        .host_path(env("PGHOST"))
        .port(port)
        .user(role)
        .dbname(&env("PGLOCK_TEST_DB"))
        .application_name("pglock-tests")
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

/// A login role that may use pglock, created once per name.
pub fn pglock_role(role: &str) -> String {
    connect()
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN;
                 END IF;
             END $$;
             GRANT pglock_user TO {role};"
        ))
        .expect("create role");
    role.to_owned()
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

/// Acquire the way a real client does: poll every `poll`; once the holder's RVN
/// has stood still for the holder's whole lease, claim the lock with that RVN.
pub fn acquire_waiting(
    client: &mut Client,
    name: &str,
    owner: &str,
    lease: Duration,
    poll: Duration,
) -> Result<Acquire, Error> {
    // The holder's RVN, when we first saw it, and the holder's lease.
    let mut watched: Option<(i64, Instant, Duration)> = None;
    loop {
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

/// The backend pid of `client`'s connection.
pub fn backend_pid(client: &mut Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// Block until backend `pid` runs a statement containing `text`.
pub fn wait_until_running(observer: &mut Client, pid: i32, text: &str) {
    let pattern = format!("%{text}%");
    while observer
        .query_opt(
            "SELECT FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE $2",
            &[&pid, &pattern],
        )
        .unwrap()
        .is_none()
    {
        thread::sleep(Duration::from_millis(10));
    }
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

/// The SQLSTATE of a failed call.
pub fn sqlstate<T: std::fmt::Debug>(result: Result<T, Error>) -> SqlState {
    let error = result.expect_err("the call must fail");
    error
        .code()
        .cloned()
        .unwrap_or_else(|| panic!("no SQLSTATE in {error}"))
}
