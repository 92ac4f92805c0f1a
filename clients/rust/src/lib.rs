//! An async client for pglock, on `tokio-postgres`:
//! lease-based distributed locks kept in PostgreSQL, fenced by record version
//! numbers (RVNs), in the manner of `cirello.io/pglock` and the DynamoDB Lock Client.
//!
//! * [`Client::acquire`] waits: it polls a held lock and takes it over once the
//!   holder's RVN has stood still for the holder's whole lease.
//! * [`Client::try_acquire`] fails fast, but remembers the RVN it saw, so that a
//!   later try takes a dead holder's lock over.
//! * A held [`Lock`] is renewed in the background: one task per client renews
//!   every lock the client holds in one `pglock_heartbeat_many` call per period
//!   (see [Heartbeats](#heartbeats)). Its [`Lock::lost_token`] (a
//!   [`CancellationToken`]) fires the moment the lock is lost, before its lease
//!   could run out (see [When a lock is lost](#when-a-lock-is-lost)).
//!   [`Lock::rvn`] is a fencing token.
//! * [`Client::with_lock`] acquires, runs a future with the token and releases.
//! * [`Client::acquire_slot`] and [`Client::try_acquire_slot`] take one of at
//!   most `slots` places of a semaphore (see [Semaphores](#semaphores)).
//!
//! Every call runs in autocommit mode, each a single atomic step in the server.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use pglock_client::{Client, ClientConfig, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let pg: tokio_postgres::Config = "host=/var/run/postgresql user=app dbname=app"
//!     .parse()
//!     .map_err(Error::Database)?;
//! // Leases of 10 s, renewed every 3 s.
//! let config = ClientConfig::new("worker-1", Duration::from_secs(10), Duration::from_secs(3));
//! let client = Client::connect(&pg, config).await?;
//!
//! // Waits for the lock, runs the job, releases.
//! let rows = client
//!     .with_lock("nightly-report", |lost| async move {
//!         tokio::select! {
//!             _ = lost.cancelled() => 0, // lost: stop at once
//!             rows = async { /* the job */ 42 } => rows,
//!         }
//!     })
//!     .await?;
//! println!("reported {rows} rows");
//!
//! // Or by hand, keeping a checkpoint in the lock for the next holder.
//! let lock = client.acquire("nightly-report").await?;
//! println!("fencing token {}, checkpoint {:?}", lock.rvn(), lock.data());
//! lock.release_keeping(Some(b"done up to 2024-06-30")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The role connecting needs `pglock_user` (`GRANT pglock_user TO app`), and the
//! extension, at version 0.3.0 or later (`ALTER EXTENSION pglock UPDATE`), must be
//! on the connection's `search_path`: a client checks its statements, those of
//! `pglock_heartbeat_many` and `pglock_acquire_slot` among them, when it connects.
//!
//! # Heartbeats
//!
//! A client renews every lock it holds with one background task, its renewer,
//! which sends `pglock_heartbeat_many` (one statement, one commit) for all the
//! locks due rather than a heartbeat per lock: a worker holding hundreds of
//! leases (shards, partitions, tenants) costs the server one call per period.
//!
//! * **Each lock keeps its own time.** A lock is due one `period` after the
//!   request that acquired or last renewed it was sent. When the earliest lock is
//!   due, the call also takes every lock due within the next half period, renewed
//!   early (never late), so locks acquired at different times fall into step
//!   after a period or two. Each call passes the client's lease, which so stays
//!   the lease in the server that the rule below counts with.
//! * **At most 10,000 locks a call** (the server's limit); more go in further
//!   calls right after.
//! * **One lock at a time is lost**: a lock the server no longer has at our RVN
//!   comes back not renewed, is lost, and leaves the renewer; the call renews the
//!   others as usual.
//! * **The task runs while the client holds a lock**: it starts with the first
//!   lock acquired, keeps going when every clone of the `Client` is dropped while
//!   locks live, and ends when the last lock is released or dropped. A client
//!   that holds nothing runs no task.
//! * Renewals share the client's one connection with its other calls.
//! * **Keep fencing transactions short.** A transaction that fences a lock
//!   (`pglock_fence`, with [`Lock::rvn`]) holds off that lock's renewal until it
//!   ends, and since the client renews all its locks in one call, that call
//!   waits too: a fence held longer than about a period delays the renewal of
//!   every lock of the client, and they are lost at their deadlines. Fence in
//!   transactions well under a period; work that must stay fenced for longer
//!   is better run as a job that heartbeats its lock inside its fencing
//!   transactions itself (as `examples/checkpointed_job.sql` does in SQL)
//!   than under a lock this client renews.
//!
//! # Semaphores
//!
//! `client.acquire_slot("exports", 3)` waits for one of the 3 slots of semaphore
//! `exports` and returns its [`Lock`], named `exports#1`, `exports#2` or
//! `exports#3`: a slot is an ordinary lock, renewed by the renewer, lost and
//! released like any other, and its [`Lock::rvn`] fences work as usual.
//! [`Client::try_acquire_slot`] returns `None` at once when every slot is held.
//!
//! * **A free slot is taken at once**, lowest first, in one
//!   `pglock_acquire_slot` call. It stores the data of
//!   [`Client::acquire_slot_with`]'s options, or none: a slot never passes a
//!   previous holder's data on.
//! * **The client waits, not the server.** It always calls
//!   `pglock_acquire_slot` with `wait_timeout => '0'`: a call waiting in the
//!   server would hold the client's one connection, and the renewals of its
//!   locks would wait behind it. When every slot is held, the client tries each
//!   slot by the rule of [`Client::acquire`]: it watches each holder's RVN and
//!   takes a slot over once that RVN has stood still for its holder's lease,
//!   never before; a released slot is taken at the next poll. Such a try costs
//!   one call per slot, so for many slots choose a longer poll interval.
//! * **Every caller must pass the same slot count**: it is not stored, and each
//!   caller only looks at its own slots 1 to `slots` (the reference has what
//!   happens during a change). 1 to [`MAX_SLOTS`]; other counts fail with
//!   [`Error::Config`] before anything is sent.
//!
//! # When a lock is lost
//!
//! Let `renewed` be the instant (monotonic clock) just *before* the request of the
//! last successful acquire or renewal of the lock was sent, `lease` the client's
//! lease and `period` its heartbeat period (at most `lease / 2`).
//!
//! * **Safe until `renewed + lease`.** The server wrote the RVN after `renewed`, and
//!   a rival must watch that RVN stand still for a whole lease after seeing it, so
//!   no one can take the lock over before `renewed + lease` (clocks running at the
//!   same rate).
//! * **Lost at `renewed + lease - margin`**, with `margin = min(period, lease / 4)`,
//!   if no heartbeat has succeeded by then. The margin is the time the work has to
//!   stop after the signal fires, before a rival may take over.
//! * **Lost at once** when the server does not renew it: the moment
//!   `pglock_heartbeat_many`'s reply answers `renewed = false` for it (we no
//!   longer hold the lock at our RVN, and a rival may hold it already), the
//!   signal fires and [`Lock::lost_reason`] reads [`LostReason::NotHeld`]. The
//!   client then reads the lock's row with `pglock_get` (waiting at most
//!   `min(poll_interval, period)`): if the row still shows our owner and RVN,
//!   another role holds it (where `pglock_heartbeat` would raise `42501`), and
//!   the reason becomes [`LostReason::HeldByOtherRole`]. That is the only
//!   change a reason ever sees; a lookup that fails leaves it `NotHeld`.
//! * **Anything else is transient** (connection error, a server restarting or
//!   failing over, timeout, cancel, ...; any error of the call as a whole): the
//!   renewal is retried after `min(poll_interval, period)` for as long as the
//!   deadline above allows, over a new connection if the old one broke (see
//!   [Reconnecting](#reconnecting)). Each call, connecting included, is abandoned
//!   after `period` or at the latest deadline of its locks, whichever comes
//!   first; a lock whose own deadline comes while the call is out is lost at its
//!   deadline. An abandoned call (this one, or any call limited by
//!   [`ClientConfig::with_call_timeout`]) is cancelled in the server too: the
//!   client sends a cancel request for its connection's statement (over TLS
//!   made as for the connection, for [`Client::connect_tls`]) on a task of its
//!   own, so a statement waiting there, e.g. on a lock's row, stops rather than
//!   holding the rows it has written and committing later. A cancel can come
//!   too late: an abandoned call may still have renewed the locks in the
//!   server; the next attempt then finds them not renewed, and they are lost
//!   (their new RVNs are unknown to us), which is the safe reading.
//!
//! A lock is due at `renewed + period` (or, sharing a call, up to half a period
//! earlier). Since `period <= lease / 2`, the first attempt leaves at least
//! `lease / 4` for retries before the deadline.
//!
//! For example, with a 20 s lease and a 5 s period: heartbeats every 5 s; when
//! they start failing, retries every 0.5 s (the default poll interval); the lock is
//! reported lost 15 s after the last successful heartbeat was sent, 5 s before any
//! rival could take it over. A server that is back (or a standby promoted in its
//! place) within those 15 s gets the next retry, and the lock is kept.
//!
//! # Reconnecting
//!
//! A lease is not a session: a lock stays in the server when the connection that
//! took it breaks, and whoever knows its name, owner and RVN, and connects as the
//! same role, may renew it. So a client made with [`Client::connect`] or
//! [`Client::connect_tls`] opens a new connection, with the same
//! `tokio_postgres::Config`, when its connection breaks, and goes on:
//!
//! * **When.** At the next call that needs the connection (a heartbeat, an
//!   acquire, a release, a get) after it was found broken: closed by the server or
//!   the network, silent past a call's time limit (a heartbeat's, or
//!   [`ClientConfig::with_call_timeout`]), or read-only (`25006`: a standby, e.g.
//!   a former primary). The connection is shared, so one call reconnects for all.
//! * **Backoff.** One attempt at a time; after a failed one the next waits 50 ms,
//!   then twice as long each time, at most `min(poll_interval, period)`. A call
//!   that finds no server fails with [`Error::Database`] (the connection error);
//!   the next call tries again, so calls work again as soon as a server is back.
//! * **Held locks** are renewed over the new connection by the renewer's next
//!   call. A lock renewed before its deadline of
//!   [When a lock is lost](#when-a-lock-is-lost) is kept, with a new RVN; one
//!   that is not is lost as usual. Nothing else changes: a lock that the new
//!   server does not renew (its last renewal did not survive, as after a
//!   failover to an asynchronous standby) is lost at once.
//! * **Clusters.** List every server, with `target_session_attrs=read-write`,
//!   e.g. `host=db1,db2,db3 port=5432 target_session_attrs=read-write`: the client
//!   then connects to whichever is the primary, also after a failover. Set a
//!   `connect_timeout` if a host can vanish without refusing connections.
//! * **Statements** are prepared again on each new connection (or, in
//!   [`StatementMode::Unnamed`], checked again); a server without pglock fails
//!   the attempt like a refused connection.
//!
//! [`Client::reconnects`] counts the connections replaced. A client made with
//! [`Client::new`] on a connection of yours never reconnects: when it breaks,
//! every call fails and held locks are lost by the rule above.
//!
//! # Connection poolers
//!
//! By default ([`StatementMode::Prepared`]) a client prepares its pglock
//! statements once per connection as named statements, then only binds and runs
//! them. A pooler in **transaction** mode (PgBouncer's `pool_mode = transaction`,
//! before 1.21 or with `max_prepared_statements = 0`, Debian 12's 1.18 among them)
//! hands each transaction whichever server connection is free, where
//! the client's statements may be missing (`26000`, `prepared statement "s0" does
//! not exist`) or another client's may be in the way (`42P05`): calls fail as
//! soon as several clients share the pool, with [`Error::StatementsNotKept`],
//! whose message says what to set. Behind such a pooler, use unnamed
//! statements:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use pglock_client::{Client, ClientConfig, Error, StatementMode};
//! # async fn run() -> Result<(), Error> {
//! // PgBouncer in transaction mode on port 6432.
//! let pg: tokio_postgres::Config = "host=/var/run/postgresql port=6432 user=app dbname=app"
//!     .parse()
//!     .map_err(Error::Database)?;
//! let config = ClientConfig::new("worker-1", Duration::from_secs(10), Duration::from_secs(3))
//!     .with_statements(StatementMode::Unnamed);
//! let client = Client::connect(&pg, config).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Each call is then parsed, planned and run in one round trip
//! (`tokio_postgres::Client::query_typed`), and nothing stays on a server
//! connection between calls. The server pays a parse and plan per call: measured
//! straight to PostgreSQL, reads (`pglock_get`, and the refused acquire a waiting
//! client polls with) ran at 40-63% of the rate of prepared ones, heartbeats,
//! whose durable commit costs more, at 96% on one connection and 58% on twelve
//! (`bench/statements.sh`; figures in the reference, "Behind PgBouncer"). Hence
//! the default. Session pooling keeps named statements and needs nothing.
//!
//! Behind a pooler a lock is no more tied to a server session than without one:
//! every call may run on another server connection, and a restart of the pooler
//! breaks the client's connection, after which the client [reconnects](#reconnecting)
//! and its locks go on as usual. Two things to size for:
//!
//! * A call waiting for a free server connection counts against its time limit (a
//!   heartbeat's, see [When a lock is lost](#when-a-lock-is-lost), or
//!   [`ClientConfig::with_call_timeout`]): give the pool enough server connections
//!   that heartbeats never queue for long.
//! * The role a lock records is the role the pooler connects to the server as.
//!
//! # Typed data (feature `serde`)
//!
//! With the optional `serde` feature (`pglock-client = { ..., features =
//! ["serde"] }`), a lock's data can be any `serde` value, kept as JSON text in
//! UTF-8: `Lock::data_as::<T>()` (also on `LockInfo` and the `HeldBy` of a
//! refused try) reads it, `AcquireOptions::data_value(&value)` stores one at
//! acquire, and `Lock::release_keeping_value(&value)` leaves one for the next holder. SQL
//! reads the same checkpoint with `convert_from(data, 'UTF8')::jsonb` and writes
//! one with `convert_to(checkpoint::text, 'UTF8')`, so a PL/pgSQL job and a Rust
//! worker can take turns on one lock. Data that is not the JSON of the type asked
//! for fails with [`Error::Data`]; a lock without data reads as `None`.

mod acquire;
mod client;
mod config;
mod connection;
mod error;
mod heartbeat;
mod held;
mod lock;
mod observe;
mod options;
mod renewer;
mod semaphore;
mod sql;
#[cfg(feature = "serde")]
mod typed;
mod waits;

pub use acquire::{HeldBy, TryAcquireOutcome};
pub use client::Client;
pub use config::{
    ClientConfig, ConfigError, StatementMode, WaitMode, MAX_LEASE, MAX_OWNER_CHARS, MAX_SLOTS,
};
pub use error::{Error, LostReason};
pub use lock::Lock;
pub use options::AcquireOptions;
pub use pglock_protocol::ArgumentError;
pub use sql::LockInfo;
pub use tokio_util::sync::CancellationToken;
