//! Holds one lock through whatever happens to the cluster, and reports it: the
//! failover test (`tests/high_availability/patroni.sh`) runs it against Patroni.
//!
//! ```text
//! ha_holder CONNINFO LOCK LEASE_MS PERIOD_MS STOP_FILE
//! ```
//!
//! `CONNINFO` is a libpq-style connection string, e.g.
//! `host=10.0.0.1,10.0.0.2 port=5432 user=app dbname=app target_session_attrs=read-write`
//! (the password, if any, from `PGPASSWORD`). It takes `LOCK`, keeps it with its
//! heartbeat, takes it again if it is lost, and once `STOP_FILE` exists releases
//! it and exits. One line per event on stdout, each starting with the wall-clock
//! time in milliseconds since the epoch:
//!
//! ```text
//! <ms> acquired <rvn> reconnects=<n>
//! <ms> renewed <rvn> reconnects=<n>      (a heartbeat moved the RVN on)
//! <ms> lost <reason>
//! <ms> released                          (or: <ms> release-failed <error>)
//! <ms> error <what failed>                (then it tries again)
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pglock_client::{AcquireOptions, Client, ClientConfig, Error, Lock};
use tokio::time::sleep;

/// How often the lock is looked at, for the report; heartbeats run on their own.
const LOOK_EVERY: Duration = Duration::from_millis(50);

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

macro_rules! report {
    ($($arg:tt)*) => { println!("{} {}", now_ms(), format_args!($($arg)*)) };
}

struct Args {
    pg: tokio_postgres::Config,
    lock: String,
    lease: Duration,
    period: Duration,
    stop_file: String,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [conninfo, lock, lease_ms, period_ms, stop_file] = args.as_slice() else {
        return Err("usage: ha_holder CONNINFO LOCK LEASE_MS PERIOD_MS STOP_FILE".into());
    };
    let mut pg: tokio_postgres::Config = conninfo
        .parse()
        .map_err(|error| format!("CONNINFO: {error}"))?;
    if let Ok(password) = std::env::var("PGPASSWORD") {
        pg.password(password);
    }
    let millis = |what: &str, text: &str| {
        text.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|error| format!("{what}: {error}"))
    };
    Ok(Args {
        pg,
        lock: lock.clone(),
        lease: millis("LEASE_MS", lease_ms)?,
        period: millis("PERIOD_MS", period_ms)?,
        stop_file: stop_file.clone(),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let stop = Path::new(&args.stop_file);
    let config = ClientConfig::new("ha-holder", args.lease, args.period);
    let client = loop {
        match Client::connect(&args.pg, config.clone()).await {
            Ok(client) => break client,
            Err(error) => report!("error connect: {error}"),
        }
        if stop.exists() {
            return ExitCode::FAILURE;
        }
        sleep(Duration::from_millis(200)).await;
    };
    // Short waits, to see the stop file; the client remembers the RVN it saw, so
    // its own lost lock is still taken over after one lease.
    let options = AcquireOptions::new().wait_at_most(Duration::from_secs(1));
    while !stop.exists() {
        match client.acquire_with(&args.lock, &options).await {
            Ok(lock) => {
                report!("acquired {} reconnects={}", lock.rvn(), client.reconnects());
                if let Some(ending) = hold(&client, lock, stop).await {
                    return ending;
                }
            }
            Err(Error::Timeout { .. }) => {}
            Err(error) => {
                report!("error acquire: {error}");
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Reports the lock's renewals until it is lost (`None`: take it again) or the
/// stop file appears (release it and end).
async fn hold(client: &Client, lock: Lock, stop: &Path) -> Option<ExitCode> {
    let mut rvn = lock.rvn();
    loop {
        if lock.rvn() != rvn {
            rvn = lock.rvn();
            report!("renewed {rvn} reconnects={}", client.reconnects());
        }
        if let Some(reason) = lock.lost_reason() {
            report!("lost {reason}");
            return None;
        }
        if stop.exists() {
            return Some(match lock.release().await {
                Ok(()) => {
                    report!("released");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    report!("release-failed {error}");
                    ExitCode::FAILURE
                }
            });
        }
        sleep(LOOK_EVERY).await;
    }
}
