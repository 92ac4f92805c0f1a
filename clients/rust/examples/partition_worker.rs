//! A worker for the fault tests (`tests/partitions/`): takes locks, works under
//! them, writes what it did to a fenced store, and records every operation as
//! one JSON line on stdout, for the history checker.
//!
//! ```text
//! partition_worker CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED [client-waits] [call-timeout=MS]
//! ```
//!
//! `CONNINFO` reaches the cluster (e.g. `host=h1,h2,h3 port=... target_session_attrs=read-write`),
//! `STORE_CONNINFO` the fenced store (a plain PostgreSQL with `fenced_write`),
//! `LOCKS` is a comma-separated list of lock names. It runs for `RUN_MS` (or until
//! SIGTERM), then releases what it holds and ends. It holds each lock for
//! 0.2 to 1.2 leases, or `PGLOCK_WORKER_HOLD=LOW,HIGH` leases. `client-waits` makes the
//! client wait by polling and take over on its own watch (`WaitMode::Client`)
//! rather than in the server; `call-timeout=MS` limits each call
//! (`ClientConfig::with_call_timeout`).
//!
//! Times are CLOCK_MONOTONIC seconds, which every network namespace of the
//! machine shares. Lines (every one has `client` and `op`):
//!
//! ```text
//! {"op":"start","lang":"rust","lease":L,"period":P,"margin":M,"t":T}
//! {"op":"acquire","lock":N,"invoke":T,"complete":T,"outcome":"ok|fail|unknown","rvn":R,"error":E}
//! {"op":"renew","lock":N,"t":T,"rvn":R}          (the renewer moved the RVN on; seen at T)
//! {"op":"lost","lock":N,"t":T,"reason":E}        (the loss signal fired at T)
//! {"op":"write","lock":N,"invoke":T,"complete":T,"outcome":"ok|fail|unknown","token":R,"seq":S}
//! {"op":"release","lock":N,"invoke":T,"complete":T,"outcome":"ok|fail|unknown","rvn":R}
//! {"op":"stop","t":T}
//! ```
//!
//! A write is "ok" when the store accepted its token, "fail" when the store
//! refused it (a larger token was seen), "unknown" when no answer came.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pglock_client::{AcquireOptions, Client, ClientConfig, Error, Lock, WaitMode};
use tokio::time::{sleep, timeout};
use tokio_postgres::NoTls;

/// Set by SIGTERM: finish the hold under way, release, stop.
static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_signal: libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
}

/// CLOCK_MONOTONIC in seconds: the clock of every history.
fn mono() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct History {
    client: String,
}

impl History {
    /// One line: `fields` is the JSON object's body after `client`.
    fn emit(&self, op: &str, fields: &str) {
        let sep = if fields.is_empty() { "" } else { "," };
        println!(
            "{{\"client\":{},\"op\":\"{op}\"{sep}{fields}}}",
            quote(&self.client)
        );
    }
}

/// A small xorshift generator: which lock, how long to hold, how long to pause.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Args {
    client: String,
    pg: tokio_postgres::Config,
    store: String,
    locks: Vec<String>,
    lease: Duration,
    period: Duration,
    run: Duration,
    seed: u64,
    client_waits: bool,
    call_timeout: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (fixed, rest) = args.split_at(args.len().min(8));
    let [client, conninfo, store, locks, lease_ms, period_ms, run_ms, seed] = fixed else {
        return Err("usage: partition_worker CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED [client-waits] [call-timeout=MS]".into());
    };
    let mut pg: tokio_postgres::Config = conninfo
        .parse()
        .map_err(|error| format!("CONNINFO: {error}"))?;
    if let Ok(password) = std::env::var("PGPASSWORD") {
        pg.password(password);
    }
    let number = |what: &str, text: &str| {
        text.parse::<u64>()
            .map_err(|error| format!("{what}: {error}"))
    };
    Ok(Args {
        client: client.clone(),
        pg,
        store: store.clone(),
        locks: locks.split(',').map(str::to_owned).collect(),
        lease: Duration::from_millis(number("LEASE_MS", lease_ms)?),
        period: Duration::from_millis(number("PERIOD_MS", period_ms)?),
        run: Duration::from_millis(number("RUN_MS", run_ms)?),
        seed: number("SEED", seed)?.max(1),
        client_waits: rest.iter().any(|arg| arg == "client-waits"),
        call_timeout: rest
            .iter()
            .find_map(|arg| arg.strip_prefix("call-timeout="))
            .map(|ms| number("call-timeout", ms).map(Duration::from_millis))
            .transpose()?,
    })
}

/// How long to hold a lock, in leases: `PGLOCK_WORKER_HOLD=LOW,HIGH` (0.2 to
/// 1.2 by default).
fn hold_range() -> (f64, f64) {
    std::env::var("PGLOCK_WORKER_HOLD")
        .ok()
        .and_then(|text| {
            let (low, high) = text.split_once(',')?;
            Some((low.parse().ok()?, high.parse().ok()?))
        })
        .unwrap_or((0.2, 1.2))
}

/// The fenced store: one connection, opened again when it breaks.
struct Store {
    conninfo: String,
    client: Option<tokio_postgres::Client>,
}

impl Store {
    /// Writes `seq` under `token`: Some(true) accepted, Some(false) refused,
    /// None no answer (unknown).
    async fn write(&mut self, resource: &str, token: i64, writer: &str, seq: i64) -> Option<bool> {
        if self.client.as_ref().is_none_or(|client| client.is_closed()) {
            let connected = timeout(
                Duration::from_secs(2),
                tokio_postgres::connect(&self.conninfo, NoTls),
            )
            .await;
            let Ok(Ok((client, connection))) = connected else {
                return None;
            };
            tokio::spawn(connection);
            self.client = Some(client);
        }
        let client = self.client.as_ref()?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&resource, &token, &writer, &seq];
        let call = client.query_one(
            "SELECT fenced_write($1::text, $2::bigint, $3::text, $4::bigint)",
            &params,
        );
        match timeout(Duration::from_secs(2), call).await {
            Ok(Ok(row)) => row.try_get::<_, bool>(0).ok(),
            _ => {
                self.client = None;
                None
            }
        }
    }
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
    let history = History {
        client: args.client.clone(),
    };
    let margin = args.period.min(args.lease / 4);
    history.emit(
        "start",
        &format!(
            "\"lang\":\"rust\",\"lease\":{},\"period\":{},\"margin\":{},\"t\":{:.6}",
            args.lease.as_secs_f64(),
            args.period.as_secs_f64(),
            margin.as_secs_f64(),
            mono()
        ),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    let end = mono() + args.run.as_secs_f64();
    let done = || STOPPING.load(Ordering::SeqCst) || mono() >= end;
    let mut config = ClientConfig::new(args.client.clone(), args.lease, args.period);
    if args.client_waits {
        config = config.with_wait_mode(WaitMode::Client);
    }
    if let Some(limit) = args.call_timeout {
        config = config.with_call_timeout(limit);
    }
    let client = loop {
        match timeout(
            Duration::from_secs(5),
            Client::connect(&args.pg, config.clone()),
        )
        .await
        {
            Ok(Ok(client)) => break client,
            Ok(Err(error)) => eprintln!("connect: {error}"),
            Err(_) => eprintln!("connect: timed out"),
        }
        if done() {
            history.emit("stop", &format!("\"t\":{:.6}", mono()));
            return ExitCode::SUCCESS;
        }
        sleep(Duration::from_millis(200)).await;
    };
    let mut store = Store {
        conninfo: args.store.clone(),
        client: None,
    };
    let mut rng = Rng(args.seed);
    let mut seq: i64 = 0;
    let wait = (args.lease / 2).max(Duration::from_millis(500));
    // PGLOCK_WORKER_FIRST=K: the first lock tried is the K-th (the harness lays
    // out who holds what when its faults begin).
    let mut first: Option<usize> = std::env::var("PGLOCK_WORKER_FIRST")
        .ok()
        .and_then(|k| k.parse().ok());
    // After a failed acquire the worker asks for the same lock again (a job that
    // needs that lock): rivals keep watching its holder.
    let mut again: Option<usize> = None;
    while !done() {
        let pick = first
            .take()
            .or(again.take())
            .unwrap_or_else(|| rng.below(args.locks.len() as u64) as usize);
        let name = &args.locks[pick % args.locks.len()];
        let invoke = mono();
        let acquired = client
            .acquire_with(name, &AcquireOptions::new().wait_at_most(wait))
            .await;
        let complete = mono();
        let fields = |outcome: &str, extra: String| {
            format!(
                "\"lock\":{},\"invoke\":{invoke:.6},\"complete\":{complete:.6},\"outcome\":\"{outcome}\"{extra}",
                quote(name)
            )
        };
        match acquired {
            Ok(lock) => {
                history.emit("acquire", &fields("ok", format!(",\"rvn\":{}", lock.rvn())));
                let (low, high) = hold_range();
                let hold_for = args.lease.as_secs_f64()
                    * (low + (high - low) * rng.below(1000) as f64 / 1000.0);
                hold(&history, &mut store, lock, name, hold_for, &mut seq, &done).await;
            }
            Err(Error::Timeout { .. }) => {
                history.emit("acquire", &fields("fail", String::new()));
                again = Some(pick);
            }
            Err(error) => {
                again = Some(pick);
                history.emit(
                    "acquire",
                    &fields(
                        "unknown",
                        format!(",\"error\":{}", quote(&error.to_string())),
                    ),
                );
                sleep(Duration::from_millis(100)).await;
            }
        }
        sleep(Duration::from_millis(rng.below(200))).await;
    }
    history.emit("stop", &format!("\"t\":{:.6}", mono()));
    ExitCode::SUCCESS
}

/// Works under `lock` for `hold_for` seconds (one fenced write every 100 to
/// 300 ms), then releases it keeping its row, unless it was lost first.
async fn hold(
    history: &History,
    store: &mut Store,
    lock: Lock,
    name: &str,
    hold_for: f64,
    seq: &mut i64,
    done: &impl Fn() -> bool,
) {
    // When the loss signal fired: recorded by a task of its own, so that a
    // write in flight does not delay it.
    let fired: Arc<Mutex<Option<f64>>> = Arc::new(Mutex::new(None));
    {
        let (token, fired) = (lock.lost_token(), Arc::clone(&fired));
        tokio::spawn(async move {
            token.cancelled().await;
            *fired.lock().unwrap_or_else(|e| e.into_inner()) = Some(mono());
        });
    }
    let start = mono();
    let mut rvn = lock.rvn();
    let mut step: u64 = 0;
    loop {
        let now = mono();
        if lock.is_lost() {
            let at = fired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(now);
            let reason = lock
                .lost_reason()
                .map_or_else(String::new, |r| r.to_string());
            history.emit(
                "lost",
                &format!(
                    "\"lock\":{},\"t\":{at:.6},\"reason\":{}",
                    quote(name),
                    quote(&reason)
                ),
            );
            return;
        }
        if lock.rvn() != rvn {
            rvn = lock.rvn();
            history.emit(
                "renew",
                &format!("\"lock\":{},\"t\":{now:.6},\"rvn\":{rvn}", quote(name)),
            );
        }
        if now - start >= hold_for || done() {
            break;
        }
        // `now` was read before the loss was checked: the write starts inside the hold.
        *seq += 1;
        let accepted = store.write(name, rvn, &history.client, *seq).await;
        let outcome = match accepted {
            Some(true) => "ok",
            Some(false) => "fail",
            None => "unknown",
        };
        history.emit(
            "write",
            &format!(
                "\"lock\":{},\"invoke\":{now:.6},\"complete\":{:.6},\"outcome\":\"{outcome}\",\"token\":{rvn},\"seq\":{}",
                quote(name),
                mono(),
                *seq
            ),
        );
        step = step
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pause = Duration::from_millis(100 + (step >> 33) % 200);
        tokio::select! {
            _ = lock.lost() => {}
            _ = sleep(pause) => {}
        }
    }
    let invoke = mono();
    let presented = lock.rvn();
    let released = lock.release_keeping(None).await;
    let (outcome, error) = match &released {
        Ok(()) => ("ok", String::new()),
        Err(Error::LockLost { .. }) => ("fail", String::new()),
        Err(error) => (
            "unknown",
            format!(",\"error\":{}", quote(&error.to_string())),
        ),
    };
    history.emit(
        "release",
        &format!(
            "\"lock\":{},\"invoke\":{invoke:.6},\"complete\":{:.6},\"outcome\":\"{outcome}\",\"rvn\":{presented}{error}",
            quote(name),
            mono()
        ),
    );
}
