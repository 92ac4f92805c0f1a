//! The SQL functions: check arguments, run one protocol step, shape the result.
//!
//! All run as the extension's owner (SECURITY DEFINER, `search_path` pinned to
//! `pg_catalog, pg_temp`): callers need EXECUTE (via `pglock_user`), never rights on
//! the table.  None is STRICT: a NULL argument gets a 22004 error, not a NULL result.

mod lease;
pub mod wait;

use crate::counters;
use crate::error::PglockError;
use crate::protocol::AcquireOutcome;

/// Unwrap a protocol result, raising its error with its SQLSTATE.
fn or_raise<T>(result: Result<T, PglockError>) -> T {
    result.unwrap_or_else(|error| error.raise())
}

/// Count how an acquire ended (a waiting acquire counts once, when it ends).
fn count_acquire(outcome: &AcquireOutcome) {
    counters::count(|c| match (outcome.acquired, outcome.taken_over) {
        (true, true) => &c.taken_over,
        (true, false) => &c.acquired,
        (false, _) => &c.refused,
    });
}
