//! Hand-off: how fast and how fairly a released lock reaches the next waiter,
//! for `pglock_acquire_wait` against `pg_advisory_lock` in the same run (the
//! benchmark's waiting case, `bench/run.sh`).
//!
//! ```text
//! handoff CONNINFO [SECONDS] [ROUNDS]
//! ```
//!
//! * latency: `ROUNDS` times (default 40), a waiter asleep in the server, then
//!   the holder releases; the time from sending the release to the waiter's
//!   answer (a pglock hand-off pays one durable commit in that time, the
//!   release's, which writes the lock to the waiter; an advisory lock none);
//! * throughput and fairness: 8 sessions loop wait-acquire + release on one
//!   lock for `SECONDS` (default 8); hand-offs per second, and the most-served
//!   session's count over the least-served's;
//! * order: 8 waiters arriving 100 ms apart; the order they are served in;
//! * the server as observer: a holder of a 2 s lease silent for 4 s, and a new
//!   waiter: how long it takes the lock;
//! * the Rust client: `Client::acquire`'s hand-off, which waits in the server on
//!   a connection of its own.
//!
//! It prints a report, then one `case label clients value value` line per
//! measure for the runner's results (prefixed `result `).  Locks are named
//! `handoff-*`; advisory keys are 71000 and up.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pglock_client::{Client as LockClient, ClientConfig};
use tokio::sync::{Barrier, Mutex};
use tokio_postgres::{Client, NoTls};

const SESSIONS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Pglock,
    Advisory,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Pglock => "pglock",
            Kind::Advisory => "advisory",
        }
    }
}

struct Bench {
    conninfo: String,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl Bench {
    async fn connect(&self) -> Result<Client, Error> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// `owner` takes the lock `name` (pglock) or key `key` (advisory), waiting.
    async fn take(
        pg: &Client,
        kind: Kind,
        name: &str,
        owner: &str,
        key: i64,
    ) -> Result<i64, Error> {
        match kind {
            Kind::Pglock => {
                let row = pg
                    .query_one(
                        "SELECT acquired, rvn FROM pglock_acquire_wait($1, $2, '1 hour', \
                         wait_timeout => '60 s')",
                        &[&name, &owner],
                    )
                    .await?;
                if !row.get::<_, bool>(0) {
                    return Err(format!("{owner} waited 60 s for {name} in vain").into());
                }
                Ok(row.get(1))
            }
            Kind::Advisory => {
                pg.execute("SELECT pg_advisory_lock($1)", &[&key]).await?;
                Ok(0)
            }
        }
    }

    async fn give_back(
        pg: &Client,
        kind: Kind,
        name: &str,
        owner: &str,
        key: i64,
        rvn: i64,
    ) -> Result<(), Error> {
        match kind {
            Kind::Pglock => {
                let released: bool = pg
                    .query_one("SELECT pglock_release($1, $2, $3)", &[&name, &owner, &rvn])
                    .await?
                    .get(0);
                if !released {
                    return Err(format!("{owner} did not hold {name}").into());
                }
            }
            Kind::Advisory => {
                pg.execute("SELECT pg_advisory_unlock($1)", &[&key]).await?;
            }
        }
        Ok(())
    }

    /// Wait until backend `pid` sleeps in a wait (pglock's, or a lock's).
    async fn asleep(observer: &Client, pid: i32) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = observer
                .query_one(
                    "SELECT coalesce(wait_event_type IN ('Extension', 'Lock'), false) \
                       FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await?;
            if row.get::<_, bool>(0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("backend {pid} never slept").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Release to a sleeping waiter, `rounds` times: each round's time from
    /// sending the release to the waiter's answer.
    async fn latency(&self, kind: Kind, rounds: usize) -> Result<Vec<Duration>, Error> {
        let holder = self.connect().await?;
        let waiter = Arc::new(self.connect().await?);
        let observer = self.connect().await?;
        let pid: i32 = waiter
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        let (name, key) = (format!("handoff-latency-{}", kind.label()), 71_000);
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let rvn = Bench::take(&holder, kind, &name, "holder", key).await?;
            let waiting = {
                let (waiter, name) = (Arc::clone(&waiter), name.clone());
                tokio::spawn(async move {
                    let rvn = Bench::take(&waiter, kind, &name, "waiter", key).await;
                    (rvn, Instant::now())
                })
            };
            Bench::asleep(&observer, pid).await?;
            let sent = Instant::now();
            Bench::give_back(&holder, kind, &name, "holder", key, rvn).await?;
            let (rvn, answered) = waiting.await?;
            times.push(answered - sent);
            Bench::give_back(&waiter, kind, &name, "waiter", key, rvn?).await?;
        }
        times.sort();
        Ok(times)
    }

    /// 8 sessions loop wait-acquire + release on one lock for `seconds`: how
    /// many times each got it.
    async fn looping(&self, kind: Kind, seconds: f64) -> Result<Vec<u64>, Error> {
        let name = format!("handoff-loop-{}", kind.label());
        let start = Arc::new(Barrier::new(SESSIONS + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut sessions = Vec::new();
        for n in 0..SESSIONS {
            let pg = self.connect().await?;
            let (name, start, stop) = (name.clone(), Arc::clone(&start), Arc::clone(&stop));
            sessions.push(tokio::spawn(async move {
                let owner = format!("looper-{n}");
                start.wait().await;
                let mut served = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rvn = Bench::take(&pg, kind, &name, &owner, 71_001).await?;
                    served += 1;
                    Bench::give_back(&pg, kind, &name, &owner, 71_001, rvn).await?;
                }
                Ok::<u64, Error>(served)
            }));
        }
        start.wait().await;
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut served = Vec::new();
        for session in sessions {
            served.push(session.await??);
        }
        Ok(served)
    }

    /// 8 waiters arriving 100 ms apart on a held lock: the order they got it.
    async fn order(&self, kind: Kind) -> Result<Vec<usize>, Error> {
        let name = format!("handoff-order-{}", kind.label());
        let holder = self.connect().await?;
        let observer = self.connect().await?;
        let rvn = Bench::take(&holder, kind, &name, "holder", 71_002).await?;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..SESSIONS {
            let pg = self.connect().await?;
            let pid: i32 = pg.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
            let (name, served) = (name.clone(), Arc::clone(&served));
            waiters.push(tokio::spawn(async move {
                let owner = format!("waiter-{n}");
                let rvn = Bench::take(&pg, kind, &name, &owner, 71_002).await?;
                served.lock().await.push(n);
                Bench::give_back(&pg, kind, &name, &owner, 71_002, rvn).await?;
                Ok::<(), Error>(())
            }));
            Bench::asleep(&observer, pid).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Bench::give_back(&holder, kind, &name, "holder", 71_002, rvn).await?;
        for waiter in waiters {
            waiter.await??;
        }
        let served = served.lock().await.clone();
        Ok(served)
    }

    /// A holder of a 2 s lease, silent for 4 s; then a waiter: how long until
    /// it holds the lock.
    async fn silent_holder(&self) -> Result<Duration, Error> {
        let pg = self.connect().await?;
        let name = "handoff-silent";
        pg.execute("SELECT FROM pglock_acquire($1, 'silent', '2 s')", &[&name])
            .await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let started = Instant::now();
        let row = pg
            .query_one(
                "SELECT acquired, rvn FROM pglock_acquire_wait($1, 'late', '1 hour', \
                 wait_timeout => '60 s')",
                &[&name],
            )
            .await?;
        let took = started.elapsed();
        let rvn: i64 = row.get(1);
        pg.execute("SELECT pglock_release($1, 'late', $2)", &[&name, &rvn])
            .await?;
        Ok(took)
    }

    /// The Rust client's waiting acquire against a holder's release, `rounds`
    /// times.
    async fn client_latency(&self, rounds: usize) -> Result<Vec<Duration>, Error> {
        let pg: tokio_postgres::Config = self.conninfo.parse()?;
        let lease = Duration::from_secs(30);
        let config = |owner: &str| ClientConfig::new(owner, lease, Duration::from_secs(10));
        let holder = LockClient::connect(&pg, config("client-holder")).await?;
        let waiter = Arc::new(LockClient::connect(&pg, config("client-waiter")).await?);
        let observer = self.connect().await?;
        let name = "handoff-client";
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let lock = holder.acquire(name).await?;
            let waiting = {
                let waiter = Arc::clone(&waiter);
                tokio::spawn(async move {
                    let lock = waiter.acquire(name).await;
                    (lock, Instant::now())
                })
            };
            // Asleep in the server, or (polling from the client) between polls.
            let deadline = Instant::now() + Duration::from_millis(300);
            loop {
                let sleeping: i64 = observer
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                          WHERE wait_event_type = 'Extension' AND query LIKE '%pglock_acquire_wait%'",
                        &[],
                    )
                    .await?
                    .get(0);
                if sleeping > 0 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let sent = Instant::now();
            lock.release().await?;
            let (lock, answered) = waiting.await?;
            times.push(answered - sent);
            lock?.release().await?;
        }
        times.sort();
        Ok(times)
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn inversions(order: &[usize]) -> usize {
    let mut count = 0;
    for (i, a) in order.iter().enumerate() {
        count += order[i + 1..].iter().filter(|b| *b < a).count();
    }
    count
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

async fn run(conninfo: String, seconds: f64, rounds: usize) -> Result<(), Error> {
    let bench = Bench { conninfo };
    let mut results = Vec::new();

    println!("hand-off: release sent -> waiter's answer, {rounds} rounds, the waiter asleep first");
    for kind in [Kind::Pglock, Kind::Advisory] {
        let times = bench.latency(kind, rounds).await?;
        let (median, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!(
            "  {:<10} p50 {:7.2} ms   p99 {:7.2} ms",
            kind.label(),
            millis(median),
            millis(p99)
        );
        results.push(format!(
            "handoff-latency {} 1 {:.3} {:.3}",
            kind.label(),
            millis(median),
            millis(p99)
        ));
        if kind == Kind::Pglock {
            println!(
                "  target p50 <= 2 ms: {}, p99 <= 10 ms: {}",
                verdict(median <= Duration::from_millis(2)),
                verdict(p99 <= Duration::from_millis(10))
            );
        }
    }

    println!("{SESSIONS} sessions looping wait-acquire + release on one lock for {seconds} s");
    let mut rates = [0.0; 2];
    for (i, kind) in [Kind::Pglock, Kind::Advisory].into_iter().enumerate() {
        let served = bench.looping(kind, seconds).await?;
        let total: u64 = served.iter().sum();
        let (most, least) = (
            *served.iter().max().unwrap_or(&0),
            *served.iter().min().unwrap_or(&0),
        );
        rates[i] = total as f64 / seconds;
        let spread = most as f64 / least.max(1) as f64;
        println!(
            "  {:<10} {:8.0} hand-offs/s   most {most} / least {least} served: {spread:.2}x",
            kind.label(),
            rates[i]
        );
        results.push(format!(
            "handoff-loop {} {SESSIONS} {:.1} {:.3}",
            kind.label(),
            rates[i],
            spread
        ));
        if kind == Kind::Pglock {
            println!(
                "  target most/least <= 2x: {}",
                verdict(spread <= 2.0 && least > 0)
            );
        }
    }
    let ratio = rates[0] / rates[1].max(f64::MIN_POSITIVE);
    println!(
        "  pglock / advisory: {ratio:.2}x (target >= 0.25x: {})",
        verdict(ratio >= 0.25)
    );

    println!("{SESSIONS} waiters arriving 100 ms apart are served in");
    for kind in [Kind::Pglock, Kind::Advisory] {
        let order = bench.order(kind).await?;
        let inverted = inversions(&order);
        println!("  {:<10} {order:?}: {inverted} inversions", kind.label());
        results.push(format!(
            "handoff-order {} {SESSIONS} {inverted} 0",
            kind.label()
        ));
    }

    let took = bench.silent_holder().await?;
    println!(
        "a 2 s lease silent for 4 s: a new waiter takes it after {:.1} ms (target <= 200 ms: {})",
        millis(took),
        verdict(took <= Duration::from_millis(200))
    );
    results.push(format!("silent-holder pglock 1 {:.3} 0", millis(took)));

    let times = bench.client_latency(rounds).await?;
    let (median, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "the Rust client's Client::acquire: hand-off p50 {:.2} ms, p99 {:.2} ms",
        millis(median),
        millis(p99)
    );
    results.push(format!(
        "handoff-latency rust-client 1 {:.3} {:.3}",
        millis(median),
        millis(p99)
    ));
    for line in results {
        println!("result {line}");
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(conninfo) = args.next() else {
        eprintln!("usage: handoff CONNINFO [SECONDS] [ROUNDS]");
        return ExitCode::from(2);
    };
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(8.0);
    let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(40);
    match run(conninfo, seconds, rounds).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handoff: {error}");
            ExitCode::FAILURE
        }
    }
}
