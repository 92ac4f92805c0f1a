//! What unnamed statements cost against named prepared ones, for pglock's calls:
//! the measurement behind the client's choice of unnamed statements (crate docs,
//! "Connection poolers").
//!
//! ```text
//! statement_cost CONNINFO [CALLS] [ROUNDS] [CONNECTIONS]
//! ```
//!
//! On `CONNECTIONS` connections at once (default 1), each mode makes `CALLS` calls
//! (default 2,000) of each kind per connection, the modes taking turns for `ROUNDS`
//! rounds (default 5); it prints the median calls per second of each mode and
//! kind. Kinds: `get` (`pglock_get`, a read), `refused` (`pglock_acquire` of a
//! lock held by someone else: a waiter's poll, a read), `heartbeat` (a write with
//! its durable commit). Modes:
//! * `named`: each statement prepared once per connection (`Client::prepare`),
//!   then bound and executed: what the client did before;
//! * `unnamed`: parsed, bound and executed in one round trip each time
//!   (`query_typed`): what the client does now.
//!
//! Behind PgBouncer in transaction mode `named` fails with several connections;
//! the failures are counted, not fatal. It writes locks named `statement-cost-*`
//! and releases them at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Barrier;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Statement};

/// The client's statements (see `src/sql.rs`).
const ACQUIRE: &str = "\
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data
  FROM pglock_acquire($1::text, $2::text,
                      lease => make_interval(secs => $3::float8),
                      data => $4::bytea,
                      replace_data => $5::boolean,
                      observed_rvn => $6::bigint)";
const HEARTBEAT: &str = "SELECT pglock_heartbeat($1::text, $2::text, $3::bigint)";
const GET: &str = "\
SELECT name, owner, rvn, extract(epoch FROM lease)::float8, data, released
  FROM pglock_get($1::text)";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Named,
    Unnamed,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Get,
    Refused,
    Heartbeat,
}

const KINDS: [Kind; 3] = [Kind::Get, Kind::Refused, Kind::Heartbeat];
const MODES: [Mode; 2] = [Mode::Named, Mode::Unnamed];

/// Untimed calls on each new connection before the timed ones.
const WARM_UP: usize = 50;

/// One connection's statements, prepared only in `named` mode.
struct Calls {
    pg: Client,
    named: Option<[Statement; 3]>,
    /// The lock this connection heartbeats, and its RVN.
    own: String,
    rvn: i64,
    /// A lock held by another owner, which this connection is refused.
    held: String,
}

impl Calls {
    async fn call(&mut self, kind: Kind) -> Result<(), tokio_postgres::Error> {
        let lease = 60.0_f64;
        let none: Option<&[u8]> = None;
        let no_rvn: Option<i64> = None;
        let no = false;
        match kind {
            Kind::Get => {
                let params: [&(dyn ToSql + Sync); 1] = [&self.own];
                self.one(2, GET, &params, &[Type::TEXT]).await?;
            }
            Kind::Refused => {
                let params: [&(dyn ToSql + Sync); 6] =
                    [&self.held, &"bench-rival", &lease, &none, &no, &no_rvn];
                let types = [
                    Type::TEXT,
                    Type::TEXT,
                    Type::FLOAT8,
                    Type::BYTEA,
                    Type::BOOL,
                    Type::INT8,
                ];
                let row = self.one(0, ACQUIRE, &params, &types).await?;
                if row.get::<_, bool>(0) {
                    eprintln!("statement-cost-held was free: the refused case measured acquires");
                }
            }
            Kind::Heartbeat => {
                let params: [&(dyn ToSql + Sync); 3] = [&self.own, &"bench-holder", &self.rvn];
                let types = [Type::TEXT, Type::TEXT, Type::INT8];
                let row = self.one(1, HEARTBEAT, &params, &types).await?;
                self.rvn = row.get(0);
            }
        }
        Ok(())
    }

    async fn one(
        &self,
        index: usize,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        types: &[Type],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        match &self.named {
            Some(statements) => self.pg.query_one(&statements[index], params).await,
            None => {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                    params.iter().copied().zip(types.iter().cloned()).collect();
                self.pg.query_typed_one(sql, &typed).await
            }
        }
    }
}

async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (pg, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(connection);
    Ok(pg)
}

/// A connection set up for `mode`, holding its own lock `statement-cost-<id>`.
async fn calls(conninfo: &str, mode: Mode, id: usize) -> Result<Calls, tokio_postgres::Error> {
    let pg = connect(conninfo).await?;
    let named = match mode {
        Mode::Unnamed => None,
        Mode::Named => Some([
            pg.prepare(ACQUIRE).await?,
            pg.prepare(HEARTBEAT).await?,
            pg.prepare(GET).await?,
        ]),
    };
    let own = format!("statement-cost-{id}");
    let rvn = pg
        .query_typed_one(
            "SELECT rvn FROM pglock_acquire($1, 'bench-holder', '60 seconds')",
            &[(&own, Type::TEXT)],
        )
        .await?
        .get(0);
    Ok(Calls {
        pg,
        named,
        own,
        rvn,
        held: "statement-cost-held".to_owned(),
    })
}

/// Calls per second of `kind` over `connections` connections at once, and the
/// failed calls.
async fn measure(
    conninfo: &str,
    mode: Mode,
    kind: Kind,
    calls: usize,
    connections: usize,
) -> (f64, usize) {
    let mut set = Vec::new();
    for id in 0..connections {
        match self::calls(conninfo, mode, id).await {
            Ok(c) => set.push(c),
            Err(error) => {
                eprintln!("{mode:?}: setting up a connection failed: {error:?}");
                return (0.0, calls * connections);
            }
        }
    }
    let barrier = Arc::new(Barrier::new(connections + 1));
    let workers: Vec<_> = set
        .into_iter()
        .map(|mut c| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                // A new backend first fills its caches.
                for _ in 0..WARM_UP {
                    let _ = c.call(kind).await;
                }
                barrier.wait().await;
                let mut failed = 0;
                for _ in 0..calls {
                    if c.call(kind).await.is_err() {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let mut failed = 0;
    for worker in workers {
        failed += worker.await.unwrap_or(calls);
    }
    let elapsed = started.elapsed();
    release_all(conninfo, "bench-holder").await;
    let done = (calls * connections - failed) as f64;
    (done / elapsed.as_secs_f64().max(1e-9), failed)
}

async fn release_all(conninfo: &str, owner: &str) {
    if let Ok(pg) = connect(conninfo).await {
        let released = pg
            .query_typed("SELECT pglock_release_all($1)", &[(&owner, Type::TEXT)])
            .await;
        if let Err(error) = released {
            eprintln!("releasing the locks of {owner}: {error:?}");
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(conninfo) = args.first() else {
        eprintln!("usage: statement_cost CONNINFO [CALLS] [ROUNDS] [CONNECTIONS]");
        return ExitCode::from(2);
    };
    let number = |index: usize, default: usize| {
        args.get(index)
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let (calls, rounds, connections) = (number(1, 2_000), number(2, 5), number(3, 1));

    // The lock every connection is refused.
    match connect(conninfo).await {
        Ok(pg) => {
            let taken = pg
                .simple_query(
                    "SELECT pglock_acquire('statement-cost-held', 'bench-other', '1 day')",
                )
                .await;
            if let Err(error) = taken {
                eprintln!("taking the held lock failed: {error:?}");
                return ExitCode::FAILURE;
            }
        }
        Err(error) => {
            eprintln!("connect: {error:?}");
            return ExitCode::FAILURE;
        }
    }

    let mut rates = vec![Vec::new(); MODES.len() * KINDS.len()];
    let mut failures = vec![0; MODES.len() * KINDS.len()];
    for _ in 0..rounds {
        for (m, mode) in MODES.iter().enumerate() {
            for (k, kind) in KINDS.iter().enumerate() {
                let (rate, failed) = measure(conninfo, *mode, *kind, calls, connections).await;
                rates[m * KINDS.len() + k].push(rate);
                failures[m * KINDS.len() + k] += failed;
            }
        }
    }
    println!(
        "{connections} connection(s), {calls} calls per kind and connection, {rounds} rounds; \
         median calls/s (failed calls)"
    );
    println!(
        "{:<8} {:>16} {:>16} {:>16}",
        "mode", "get", "refused", "heartbeat"
    );
    for (m, mode) in MODES.iter().enumerate() {
        let mut line = format!("{:<8}", format!("{mode:?}").to_lowercase());
        for k in 0..KINDS.len() {
            let index = m * KINDS.len() + k;
            let cell = format!("{:.0} ({})", median(&mut rates[index]), failures[index]);
            line.push_str(&format!(" {cell:>16}"));
        }
        println!("{line}");
    }

    release_all(conninfo, "bench-other").await;
    ExitCode::SUCCESS
}
