//! The client's one connection to the server, opened again when it breaks.
//!
//! A lease is not a session: a lock outlives the connection that took it, so a
//! broken connection is replaced and the locks go on being renewed over the new
//! one. The rules are in the crate docs, section [Reconnecting](crate#reconnecting).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Client as PgClient, NoTls};

use crate::config::StatementMode;
use crate::error::Error;
use crate::sql::{Calls, Sql};

/// The first wait between two failed attempts to connect; it doubles up to a cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How long a cancel request may take (connecting included) before it is
/// given up: it runs on a task of its own, and a server that does not answer
/// it in that time has lost the connection's statement anyway.
const CANCEL_LIMIT: Duration = Duration::from_secs(10);

/// A new server connection and the task that drives it (`None` if the task is
/// not ours to stop).
pub(crate) type Opened = (PgClient, Option<AbortHandle>);

type Opening = Pin<Box<dyn Future<Output = Result<Opened, tokio_postgres::Error>> + Send>>;

/// Opens a new connection, the same way each time.
pub(crate) type Opener = Box<dyn Fn() -> Opening + Send + Sync>;

type Cancelling = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// Sends a cancel request for a connection's running statement, over a new
/// connection opened as the connections are (plain or TLS).
pub(crate) type Canceller = Box<dyn Fn(CancelToken) -> Cancelling + Send + Sync>;

/// The canceller of plain connections.
pub(crate) fn plain_canceller() -> Canceller {
    Box::new(|token: CancelToken| Box::pin(async move { token.cancel_query(NoTls).await }))
}

/// Why a call through the connection failed: `Connect` while getting a
/// connection at all, `Call` from the call itself. Only the call's own errors
/// say something about a lock (a refused connection may also carry `42501`).
#[derive(Debug)]
pub(crate) enum Failure {
    Connect(Error),
    Call(Error),
}

impl Failure {
    pub fn into_error(self) -> Error {
        match self {
            Failure::Connect(error) | Failure::Call(error) => error,
        }
    }

    /// The error as it reads, e.g. "database error: error connecting to server:
    /// Connection refused (os error 111)".
    pub fn describe(&self) -> String {
        let (Failure::Connect(error) | Failure::Call(error)) = self;
        error.to_string()
    }
}

/// The connection a client's calls go over.
pub(crate) enum Connection {
    /// Handed to us by the caller: used as it is, never replaced. Its TLS
    /// connector is unknown, so its cancel requests go without TLS.
    Given(Arc<Sql>),
    /// Opened by us, and opened again when it breaks.
    Reopened(Reopening),
}

/// A connection we opened, and how to replace it.
pub(crate) struct Reopening {
    opener: Opener,
    canceller: Canceller,
    statements: StatementMode,
    calls: Calls,
    current: Mutex<Option<Current>>,
    /// Held while connecting, so that one attempt runs at a time.
    attempts: tokio::sync::Mutex<Attempts>,
    /// The longest wait between two attempts.
    max_backoff: Duration,
    reconnects: AtomicU64,
}

#[derive(Debug)]
struct Current {
    sql: Arc<Sql>,
    task: Option<AbortHandle>,
}

impl Current {
    fn close(self) {
        if let Some(task) = self.task {
            task.abort();
        }
    }
}

/// Failed attempts to connect since the last success.
#[derive(Debug, Default)]
struct Attempts {
    failures: u32,
    next_at: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connection::Given(_) => f.write_str("Connection::Given"),
            Connection::Reopened(reopening) => f
                .debug_struct("Connection::Reopened")
                .field("reconnects", &reopening.reconnects.load(Ordering::Relaxed))
                .field("max_backoff", &reopening.max_backoff)
                .finish_non_exhaustive(),
        }
    }
}

impl Connection {
    /// A connection that is opened with `opener` now and again whenever it breaks,
    /// waiting at most `max_backoff` between failed attempts, sending statements
    /// as `statements` says; `canceller` cancels the statement of a call
    /// abandoned at its time limit.
    pub async fn open(
        opener: Opener,
        canceller: Canceller,
        max_backoff: Duration,
        statements: StatementMode,
        calls: Calls,
    ) -> Result<Self, Error> {
        let (pg, task) = opener().await?;
        let current = prepared(pg, task, statements, calls).await?;
        Ok(Connection::Reopened(Reopening {
            opener,
            canceller,
            statements,
            calls,
            current: Mutex::new(Some(current)),
            attempts: tokio::sync::Mutex::new(Attempts::default()),
            max_backoff,
            reconnects: AtomicU64::new(0),
        }))
    }

    /// A connection the caller opened: used as it is, never replaced.
    pub async fn given(pg: Arc<PgClient>, statements: StatementMode) -> Result<Self, Error> {
        Ok(Connection::Given(Arc::new(
            Sql::prepare(pg, statements, Calls::Main).await?,
        )))
    }

    /// How many times a broken connection has been replaced.
    pub fn reconnects(&self) -> u64 {
        match self {
            Connection::Given(_) => 0,
            Connection::Reopened(reopening) => reopening.reconnects.load(Ordering::Relaxed),
        }
    }

    /// Runs `call` on a working connection (opening one if it must), limited to
    /// `limit` in all. A connection that gave no reply in time, or that turned out
    /// to be read-only (a standby, e.g. the old primary after a failover), is
    /// dropped, so that the next call opens a new one.
    ///
    /// A call abandoned at its limit is also cancelled in the server: dropping
    /// it here leaves its statement running there (waiting on a lock, say, and
    /// committing later what nobody learns of), so a cancel request for the
    /// connection's statement goes out on a task of its own.
    pub async fn call<T, F, Fut>(
        &self,
        limit: Option<Duration>,
        operation: &'static str,
        call: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(Arc<Sql>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut used = None;
        let attempt = async {
            let sql = self.sql().await.map_err(Failure::Connect)?;
            used = Some(Arc::clone(&sql));
            call(sql).await.map_err(Failure::Call)
        };
        let outcome = match limit {
            None => attempt.await,
            Some(after) => match timeout(after, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    if let Some(sql) = &used {
                        self.cancel(sql);
                    }
                    Err(Failure::Call(Error::Timeout { operation, after }))
                }
            },
        };
        if let (Connection::Reopened(reopening), Err(Failure::Call(error)), Some(sql)) =
            (self, &outcome, &used)
        {
            if breaks_the_connection(error) {
                reopening.drop_if_current(sql);
            }
        }
        outcome
    }

    /// Sends a cancel request for whatever `sql`'s connection is running, without
    /// waiting for it: the server gives no answer, and an error (no server to
    /// reach) changes nothing for the caller.
    fn cancel(&self, sql: &Sql) {
        let token = sql.cancel_token();
        let cancelling = match self {
            Connection::Given(_) => plain_canceller()(token),
            Connection::Reopened(reopening) => (reopening.canceller)(token),
        };
        tokio::spawn(async move {
            let _ = timeout(CANCEL_LIMIT, cancelling).await;
        });
    }

    async fn sql(&self) -> Result<Arc<Sql>, Error> {
        match self {
            // Its calls fail as it does.
            Connection::Given(sql) => Ok(Arc::clone(sql)),
            Connection::Reopened(reopening) => reopening.sql().await,
        }
    }
}

impl Reopening {
    /// The current connection if it works, else a new one: one attempt, made
    /// after the backoff that earlier failures call for.
    async fn sql(&self) -> Result<Arc<Sql>, Error> {
        if let Some(sql) = self.working() {
            return Ok(sql);
        }
        let mut attempts = self.attempts.lock().await;
        // Another call may have connected while this one waited.
        if let Some(sql) = self.working() {
            return Ok(sql);
        }
        if let Some(at) = attempts.next_at {
            sleep_until(at).await;
        }
        // Counted before connecting: an attempt abandoned by its caller's time
        // limit still delays the next one.
        attempts.failures = attempts.failures.saturating_add(1);
        attempts.next_at = Some(Instant::now() + backoff(attempts.failures, self.max_backoff));
        let (pg, task) = (self.opener)().await?;
        let current = prepared(pg, task, self.statements, self.calls).await?;
        let sql = Arc::clone(&current.sql);
        *attempts = Attempts::default();
        if let Some(old) = self.current().replace(current) {
            old.close();
        }
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        Ok(sql)
    }

    /// The current connection, unless it is closed.
    fn working(&self) -> Option<Arc<Sql>> {
        let mut current = self.current();
        if current.as_ref()?.sql.is_closed() {
            if let Some(closed) = current.take() {
                closed.close();
            }
            return None;
        }
        current.as_ref().map(|open| Arc::clone(&open.sql))
    }

    /// Drops `broken` if it is still the current connection (not one that has
    /// replaced it meanwhile).
    fn drop_if_current(&self, broken: &Arc<Sql>) {
        let mut current = self.current();
        if current
            .as_ref()
            .is_some_and(|open| Arc::ptr_eq(&open.sql, broken))
        {
            if let Some(open) = current.take() {
                open.close();
            }
        }
    }

    fn current(&self) -> MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes a new connection ready for pglock's statements; stops its task on failure.
async fn prepared(
    pg: PgClient,
    task: Option<AbortHandle>,
    statements: StatementMode,
    calls: Calls,
) -> Result<Current, Error> {
    match Sql::prepare(Arc::new(pg), statements, calls).await {
        Ok(sql) => Ok(Current {
            sql: Arc::new(sql),
            task,
        }),
        Err(error) => {
            if let Some(task) = task {
                task.abort();
            }
            Err(error)
        }
    }
}

/// Whether a call's error means its connection is of no more use: no reply in
/// time (the server or the network may be gone without closing it), or a
/// read-only server where pglock cannot write.
fn breaks_the_connection(error: &Error) -> bool {
    match error {
        Error::Timeout { .. } => true,
        Error::Database(error) => {
            error.is_closed() || error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
        }
        _ => false,
    }
}

/// The wait before the next attempt after `failures` failed ones in a row: none
/// before the first, then 50 ms, doubling up to `max`.
fn backoff(failures: u32, max: Duration) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_BACKOFF
            .saturating_mul(1u32.checked_shl(n - 1).unwrap_or(u32::MAX))
            .min(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_50_ms_up_to_the_cap() {
        let cap = Duration::from_millis(500);
        let waits: Vec<u128> = (0..8).map(|n| backoff(n, cap).as_millis()).collect();
        assert_eq!(waits, [0, 50, 100, 200, 400, 500, 500, 500]);
        assert_eq!(backoff(u32::MAX, cap), cap);
        assert_eq!(
            backoff(3, Duration::from_millis(10)),
            Duration::from_millis(10)
        );
    }
}
