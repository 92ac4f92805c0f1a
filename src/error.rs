//! Every error pglock raises, each with the one SQLSTATE the reference documents.
//!
//! Errors are plain values (the protocol's, and the argument checks' here) until
//! an SQL function's body, where `?` turns them into a PostgreSQL ERROR with
//! SQLSTATE, DETAIL and HINT, located at that `?` ([`SqlError`]).

use std::panic::Location;

use pglock_protocol::limits::MAX_HEARTBEAT_MANY;
use pglock_protocol::{ArgumentError, NotHeldReason, ProtocolError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

use crate::session;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PglockError {
    /// 22004: an argument that must be given was NULL.
    #[error("pglock: {argument} must not be NULL")]
    NullArgument { argument: &'static str },
    /// An argument that breaks its rule (22023, 22001 or 54000; see `sqlstate`).
    #[error(transparent)]
    Argument(#[from] ArgumentError),
    /// 25000: a waiting acquire in a transaction whose snapshot would never show a
    /// release or a heartbeat (REPEATABLE READ or SERIALIZABLE).
    #[error(
        "pglock: a waiting acquire needs READ COMMITTED: this transaction's \
         snapshot would never show the lock change"
    )]
    WaitNeedsReadCommitted,
    /// 2D000: the committing procedure called where it cannot commit.
    #[error("pglock: pglock_acquire_wait_committing must be called outside a transaction block")]
    CommittingWaitInTransaction,
    /// 55000: the library is newer than the extension's objects in this database.
    #[error("pglock: the extension in this database is older than its library")]
    ExtensionNotUpdated,
    /// 55000: counters asked for, but pglock was not preloaded.
    #[error("pglock: counters are kept only when pglock is in shared_preload_libraries")]
    NotPreloaded,
    /// 22023: the names and RVNs of a heartbeat_many do not pair up.
    #[error("pglock: names has {names} elements but rvns has {rvns}")]
    ArrayLengthsDiffer { names: usize, rvns: usize },
    /// 22023: a name given twice to a heartbeat_many.
    #[error("pglock: names lists \"{name}\" more than once")]
    RepeatedName { name: String },
    /// 54000: more names than one heartbeat_many renews.
    #[error("pglock: names has {count} elements; the limit is {MAX_HEARTBEAT_MANY}")]
    TooManyNames { count: usize },
    /// An array element that breaks its argument's rule: that rule's error and
    /// SQLSTATE, with the element's position (from 1).
    #[error("{error} (element {position} of {array})")]
    Element {
        array: &'static str,
        position: usize,
        error: Box<PglockError>,
    },
    /// What a protocol step ended with (55000, 42501, 40001, 22023).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl PglockError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::NullArgument { .. } => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            Self::Argument(
                ArgumentError::EmptyLabel { .. }
                | ArgumentError::LabelContainsNul { .. }
                | ArgumentError::LeaseOutOfRange { .. }
                | ArgumentError::RvnNotPositive { .. }
                | ArgumentError::NegativeWait { .. }
                | ArgumentError::SlotsOutOfRange { .. },
            )
            | Self::ArrayLengthsDiffer { .. }
            | Self::RepeatedName { .. }
            | Self::Protocol(ProtocolError::DataWithoutKeep) => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::WaitNeedsReadCommitted => ERRCODE_INVALID_TRANSACTION_STATE,
            Self::CommittingWaitInTransaction => ERRCODE_INVALID_TRANSACTION_TERMINATION,
            Self::Argument(
                ArgumentError::LabelTooLong { .. } | ArgumentError::SemaphoreNameTooLong { .. },
            ) => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            Self::Argument(ArgumentError::DataTooLarge { .. }) | Self::TooManyNames { .. } => {
                ERRCODE_PROGRAM_LIMIT_EXCEEDED
            }
            Self::Element { error, .. } => error.sqlstate(),
            Self::Protocol(ProtocolError::NotHeld { .. })
            | Self::NotPreloaded
            | Self::ExtensionNotUpdated => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Self::Protocol(ProtocolError::HeldByOtherRole { .. }) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Self::Protocol(ProtocolError::SerializationFailure { .. }) => {
                ERRCODE_T_R_SERIALIZATION_FAILURE
            }
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Self::Protocol(ProtocolError::NotHeld { reason, .. }) => Some(match reason {
                NotHeldReason::Missing => "The lock does not exist: it was released \
                                           without keep, or never taken."
                    .into(),
                NotHeldReason::Released => "The lock was released.".into(),
                NotHeldReason::OtherOwner { owner } => {
                    format!("The lock is held by owner \"{owner}\".")
                }
                NotHeldReason::NewerRvn { rvn } => format!(
                    "The lock's RVN is now {rvn}: the lease was taken over after a missed heartbeat, \
                     or the RVN given is not the latest."
                ),
            }),
            Self::Protocol(ProtocolError::HeldByOtherRole { holder_role, .. }) => {
                let role = Oid::from(holder_role.0);
                let name = session::role_name(role).unwrap_or_else(|| role.to_u32().to_string());
                Some(format!("The lock was taken by role \"{name}\"."))
            }
            Self::Element { error, .. } => error.detail(),
            _ => None,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Protocol(ProtocolError::NotHeld { .. }) => {
                Some("Stop the work this lock protects; acquire the lock again to continue.")
            }
            Self::Protocol(ProtocolError::HeldByOtherRole { .. }) => {
                Some("Only the role that acquired a lock may heartbeat, fence or release it.")
            }
            Self::Protocol(ProtocolError::DataWithoutKeep) => {
                Some("Pass keep => true to store data on release.")
            }
            Self::WaitNeedsReadCommitted => {
                Some("Call it in autocommit, or in a READ COMMITTED transaction.")
            }
            Self::CommittingWaitInTransaction => Some(
                "It commits while it waits: CALL it on its own, not in BEGIN ... COMMIT or \
                 from a function. Inside a transaction, use pglock_acquire_wait.",
            ),
            Self::ExtensionNotUpdated => Some("Run ALTER EXTENSION pglock UPDATE as a superuser."),
            Self::NotPreloaded => Some(
                "Add pglock to shared_preload_libraries in postgresql.conf and restart the server.",
            ),
            Self::Protocol(ProtocolError::SerializationFailure { .. }) => {
                Some("Call pglock functions in READ COMMITTED, ideally in autocommit.")
            }
            Self::RepeatedName { .. } => Some(
                "Give each lock once, with its latest RVN: a second renewal would find \
                 the RVN the first one wrote.",
            ),
            Self::TooManyNames { .. } => Some("Renew the locks in several calls."),
            Self::Element { error, .. } => error.hint(),
            _ => None,
        }
    }
}

/// The `?` in an SQL function turns a pglock error into the ERROR PostgreSQL
/// raises, with its SQLSTATE, DETAIL and HINT, located at that `?`.
impl From<PglockError> for ErrorReport {
    #[track_caller]
    fn from(error: PglockError) -> ErrorReport {
        let at = Location::caller();
        let mut report = ErrorReport::new(error.sqlstate(), error.to_string(), module_of(at));
        if let Some(detail) = error.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = error.hint() {
            report = report.set_hint(hint);
        }
        report
    }
}

/// The ERROR an SQL function's body ends with, made at the `?` that turned a
/// pglock, protocol or argument error into it: its LOCATION names that `?`,
/// wherever the body's caller (a `#[pg_extern]` wrapper, a C entry point)
/// raises it.
pub struct SqlError(ErrorReport);

impl From<PglockError> for SqlError {
    #[track_caller]
    fn from(error: PglockError) -> SqlError {
        SqlError(ErrorReport::from(error))
    }
}

impl From<ProtocolError> for SqlError {
    #[track_caller]
    fn from(error: ProtocolError) -> SqlError {
        SqlError(ErrorReport::from(PglockError::Protocol(error)))
    }
}

impl From<SqlError> for ErrorReport {
    fn from(error: SqlError) -> ErrorReport {
        error.0
    }
}

/// Raise `error`: for the C entry points, which return no `Result`.
pub fn raise(error: SqlError) -> ! {
    report(error.0)
}

/// Raise XX000 for what cannot happen: a bug in pglock, never a caller's
/// mistake, located at the caller.
#[track_caller]
pub fn bug(message: impl std::fmt::Display) -> ! {
    let at = Location::caller();
    report(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("pglock: {message}"),
        module_of(at),
    ))
}

fn report(report: ErrorReport) -> ! {
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}

/// The module a source location is in (`functions/lease` for
/// `src/functions/lease.rs`), as the function part of an error's LOCATION.
fn module_of(at: &'static Location<'static>) -> &'static str {
    let file = at.file();
    let file = file.strip_prefix("src/").unwrap_or(file);
    file.strip_suffix(".rs").unwrap_or(file)
}
