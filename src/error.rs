//! Every error pglock raises, each with the one SQLSTATE the README documents.
//!
//! Errors are built as plain values (so the protocol can be unit-tested) and
//! turned into a PostgreSQL ERROR only at the SQL boundary, by [`PglockError::raise`].

use std::fmt;

use crate::store;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::pg_sys::Oid;
use pgrx::prelude::*;

/// Longest lock name or owner label, in characters.
pub const MAX_LABEL_CHARS: usize = 255;
/// Largest `data` payload a lock may carry, in bytes (1 MiB).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// Longest lease, in microseconds (one day).
pub const MAX_LEASE_MICROS: i128 = 24 * 60 * 60 * 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PglockError {
    /// 22004: an argument that must be given was NULL.
    NullArgument { argument: &'static str },
    /// 22023: a name or owner label that is the empty string.
    EmptyLabel { argument: &'static str },
    /// 22001: a name or owner label over [`MAX_LABEL_CHARS`].
    LabelTooLong {
        argument: &'static str,
        chars: usize,
    },
    /// 22023: a lease that is zero, negative or over [`MAX_LEASE_MICROS`].
    LeaseOutOfRange {
        argument: &'static str,
        micros: i128,
    },
    /// 22023: a negative `wait_timeout`.
    NegativeWait {
        argument: &'static str,
        micros: i128,
    },
    /// 25000: a waiting acquire in a transaction whose snapshot would never show a
    /// release or a heartbeat (REPEATABLE READ or SERIALIZABLE).
    WaitNeedsReadCommitted,
    /// 55000: counters asked for, but pglock was not preloaded.
    NotPreloaded,
    /// 22023: an RVN that is zero or negative (the sequence starts at 1).
    RvnNotPositive { argument: &'static str, rvn: i64 },
    /// 54000: data larger than [`MAX_DATA_BYTES`].
    DataTooLarge { bytes: usize },
    /// 22023: `data` given to a release that deletes the lock, so it would be lost.
    DataWithoutKeep,
    /// 55000: a heartbeat from a caller that no longer holds the lock.
    NotHeld {
        name: String,
        owner: String,
        reason: NotHeldReason,
    },
    /// 42501: owner and RVN match but the lock was taken by another role.
    HeldByOtherRole { name: String, holder_role: Oid },
    /// 40001: the lock kept changing under a transaction whose snapshot cannot see it
    /// (REPEATABLE READ or SERIALIZABLE); retry the transaction.
    SerializationFailure { name: String },
}

/// Why a heartbeat found that its caller does not hold the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHeldReason {
    Missing,
    Released,
    OtherOwner { owner: String },
    NewerRvn { rvn: i64 },
}

impl PglockError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::NullArgument { .. } => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            Self::EmptyLabel { .. }
            | Self::LeaseOutOfRange { .. }
            | Self::RvnNotPositive { .. }
            | Self::NegativeWait { .. }
            | Self::DataWithoutKeep => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::WaitNeedsReadCommitted => ERRCODE_INVALID_TRANSACTION_STATE,
            Self::LabelTooLong { .. } => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            Self::DataTooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::NotHeld { .. } | Self::NotPreloaded => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            Self::HeldByOtherRole { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Self::SerializationFailure { .. } => ERRCODE_T_R_SERIALIZATION_FAILURE,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Self::NotHeld { reason, .. } => Some(match reason {
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
            Self::HeldByOtherRole { holder_role, .. } => {
                Some(format!("The lock was taken by role \"{}\".", store::role_name(*holder_role)))
            }
            _ => None,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::NotHeld { .. } => {
                Some("Stop the work this lock protects; acquire the lock again to continue.")
            }
            Self::HeldByOtherRole { .. } => {
                Some("Only the role that acquired a lock may heartbeat or release it.")
            }
            Self::DataWithoutKeep => Some("Pass keep => true to store data on release."),
            Self::WaitNeedsReadCommitted => {
                Some("Call it in autocommit, or in a READ COMMITTED transaction.")
            }
            Self::NotPreloaded => Some(
                "Add pglock to shared_preload_libraries in postgresql.conf and restart the server.",
            ),
            Self::SerializationFailure { .. } => {
                Some("Call pglock functions in READ COMMITTED, ideally in autocommit.")
            }
            _ => None,
        }
    }

    /// Raise this error as a PostgreSQL ERROR; the current transaction aborts.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pglock");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// Raise XX000 for a broken invariant inside pglock: a bug, never a user's mistake.
pub fn internal_error(message: String) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, message, "pglock")
        .report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

impl fmt::Display for PglockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NullArgument { argument } => write!(f, "pglock: {argument} must not be NULL"),
            Self::EmptyLabel { argument } => write!(f, "pglock: {argument} must not be empty"),
            Self::LabelTooLong { argument, chars } => write!(
                f,
                "pglock: {argument} is {chars} characters long; the limit is {MAX_LABEL_CHARS}"
            ),
            Self::LeaseOutOfRange { argument, micros } => write!(
                f,
                "pglock: {argument} must be greater than 0 and at most 1 day, got {} seconds",
                *micros as f64 / 1e6
            ),
            Self::NegativeWait { argument, micros } => write!(
                f,
                "pglock: {argument} must not be negative, got {} seconds",
                *micros as f64 / 1e6
            ),
            Self::NotPreloaded => write!(
                f,
                "pglock: counters are kept only when pglock is in shared_preload_libraries"
            ),
            Self::WaitNeedsReadCommitted => write!(
                f,
                "pglock: a waiting acquire needs READ COMMITTED: this transaction's \
                 snapshot would never show the lock change"
            ),
            Self::RvnNotPositive { argument, rvn } => {
                write!(f, "pglock: {argument} must be a positive RVN, got {rvn}")
            }
            Self::DataTooLarge { bytes } => write!(
                f,
                "pglock: data is {bytes} bytes; the limit is {MAX_DATA_BYTES} bytes"
            ),
            Self::DataWithoutKeep => {
                write!(
                    f,
                    "pglock: data given to a release with keep = false would be lost"
                )
            }
            Self::NotHeld { name, owner, .. } => {
                write!(f, "pglock: lock \"{name}\" is not held by \"{owner}\"")
            }
            Self::HeldByOtherRole { name, .. } => {
                write!(f, "pglock: lock \"{name}\" belongs to another role")
            }
            Self::SerializationFailure { name } => write!(
                f,
                "pglock: could not serialize access to lock \"{name}\" due to concurrent update"
            ),
        }
    }
}
