//! The one error type of the crate, and why a lock was lost.

use std::fmt;
use std::time::Duration;

use tokio_postgres::error::{DbError, SqlState};

use crate::config::ConfigError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The [`ClientConfig`](crate::ClientConfig), or an argument such as a
    /// semaphore's slot count, broke a rule; nothing was sent.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The server raised an error or the connection failed. [`Error::code`] gives the
    /// SQLSTATE, e.g. `22023` for an empty lock name, and [`Error::as_db_error`]
    /// everything the server said. It reads as the server wrote it, e.g.
    /// `database error: ERROR 55000: pglock: ... (DETAIL: ... HINT: ...)`, or
    /// with the causes of a failed connection, e.g. `database error: error
    /// connecting to server: Connection refused (os error 111)`.
    #[error("database error: {}", DatabaseError(.0))]
    Database(tokio_postgres::Error),
    /// A call over named prepared statements
    /// ([`StatementMode::Prepared`](crate::StatementMode::Prepared), the
    /// default) found the server connection without the client's statement
    /// (`26000`, `prepared statement "s11" does not exist`) or with another of
    /// its name (`42P05`, `prepared statement "s0" already exists`), and did
    /// not run. The connection does not keep the client's statements: it goes
    /// through a pooler in transaction mode (PgBouncer's `pool_mode =
    /// transaction` before 1.21, or with `max_prepared_statements = 0`), which
    /// hands each transaction any server connection. Behind such a pooler,
    /// configure the client with `ClientConfig::with_statements(StatementMode::Unnamed)`
    /// (see [`StatementMode::Unnamed`](crate::StatementMode::Unnamed) and
    /// [Connection poolers](crate#connection-poolers)). [`Error::code`] and
    /// [`Error::as_db_error`] give the server's error.
    #[error(
        "database error: {} (this connection does not keep the client's prepared statements, \
         as behind a pooler in transaction mode such as PgBouncer with pool_mode = transaction: \
         configure the client with ClientConfig::with_statements(StatementMode::Unnamed))",
        DatabaseError(.0)
    )]
    StatementsNotKept(tokio_postgres::Error),
    /// The lock is no longer held by this client: work done under it may overlap
    /// with its next holder's.
    #[error("lock {name:?} lost: {reason}")]
    LockLost { name: String, reason: LostReason },
    /// Lock data that is not the JSON of the type asked for, or a value that JSON
    /// cannot hold: from the typed-data methods of the `serde` feature
    /// (`Lock::data_as`, `AcquireOptions::data_value`, ...). The box holds the
    /// `serde_json::Error`.
    #[error("lock data (JSON): {0}")]
    Data(Box<dyn std::error::Error + Send + Sync>),
    /// A waiting acquire ([`AcquireOptions::wait_at_most`](crate::AcquireOptions::wait_at_most))
    /// or a call limited by [`ClientConfig::with_call_timeout`](crate::ClientConfig::with_call_timeout)
    /// ran out of time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Database(error)
    }
}

impl Error {
    /// The SQLSTATE the server raised, if this is a [`Error::Database`] from the
    /// server (or an [`Error::StatementsNotKept`]).
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Error::Database(error) | Error::StatementsNotKept(error) => error.code(),
            _ => None,
        }
    }

    /// What the server said, if this is a [`Error::Database`] the server raised
    /// (or an [`Error::StatementsNotKept`]): message, SQLSTATE, detail, hint,
    /// and where.
    pub fn as_db_error(&self) -> Option<&DbError> {
        match self {
            Error::Database(error) | Error::StatementsNotKept(error) => error.as_db_error(),
            _ => None,
        }
    }

    /// Whether this is [`Error::LockLost`].
    pub fn is_lock_lost(&self) -> bool {
        matches!(self, Error::LockLost { .. })
    }
}

/// Why a [`Lock`](crate::Lock) stopped being held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The server says this client does not hold the lock at its RVN any more: a
    /// heartbeat raised `55000` or the release returned `false`. Another client took
    /// it over, or a heartbeat's reply was lost and the RVN moved on without us.
    NotHeld,
    /// A heartbeat raised `42501`: another database role holds the lock.
    HeldByOtherRole,
    /// No heartbeat succeeded in time, so the lease might run out soon (see
    /// [the rule](crate#when-a-lock-is-lost)). `last_error` is the last failed attempt's
    /// error, if an attempt failed rather than hung.
    HeartbeatsFailed { last_error: Option<String> },
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::NotHeld => f.write_str("the server says it is no longer held at our RVN"),
            LostReason::HeldByOtherRole => f.write_str("another database role holds it"),
            LostReason::HeartbeatsFailed { last_error: None } => {
                f.write_str("no heartbeat succeeded before the safety deadline")
            }
            LostReason::HeartbeatsFailed {
                last_error: Some(error),
            } => write!(
                f,
                "no heartbeat succeeded before the safety deadline (last error: {error})"
            ),
        }
    }
}

/// A `tokio_postgres::Error` in full: its own `Display` says only "db error" for
/// what the server raised, and leaves a failed connection's why to its causes.
/// Shown in full here, it has no `source`: nothing would be printed twice.
struct DatabaseError<'a>(&'a tokio_postgres::Error);

impl fmt::Display for DatabaseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(
                f,
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            )?;
            match (db.detail(), db.hint()) {
                (Some(detail), Some(hint)) => write!(f, " (DETAIL: {detail} HINT: {hint})"),
                (Some(detail), None) => write!(f, " (DETAIL: {detail})"),
                (None, Some(hint)) => write!(f, " (HINT: {hint})"),
                (None, None) => Ok(()),
            }
        } else {
            let mut text = self.0.to_string();
            let mut source = std::error::Error::source(self.0);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            f.write_str(&text)
        }
    }
}
