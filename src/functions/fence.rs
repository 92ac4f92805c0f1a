//! The fence: `pglock_fence`, for the writes a holder makes in the database.

use pglock_protocol::steps::{self, FenceRequest};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::SqlError;
use crate::input;
use crate::session;
use crate::store::{Access, Backend};

/// Checks that the caller holds the lock and keeps it so until the caller's
/// transaction ends: no heartbeat, takeover or release of it by another
/// transaction commits before this one.  Returns the RVN; writes nothing.
///
/// A read-only transaction (a hot standby, `READ ONLY`) gets 25006 at once: it
/// has no writes to protect, and a standby's fence could not hold off the
/// primary's writers.
#[pg_extern(volatile, parallel_unsafe)]
fn pglock_fence(
    name: Option<&str>,
    owner: Option<&str>,
    rvn: Option<i64>,
) -> Result<i64, ErrorReport> {
    Ok(fence(name, owner, rvn)?)
}

fn fence(name: Option<&str>, owner: Option<&str>, rvn: Option<i64>) -> Result<i64, SqlError> {
    session::refuse_if_read_only(c"pglock_fence");
    let request = FenceRequest {
        name: input::label("name", name)?,
        owner: input::label("owner", owner)?,
        rvn: input::rvn("rvn", rvn)?,
    };
    Ok(steps::fence(
        &mut Backend::for_current_user(Access::Write)?,
        &request,
    )?)
}
