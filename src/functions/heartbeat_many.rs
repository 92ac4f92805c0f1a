//! `pglock_heartbeat_many`: one statement, and one commit, renews every lock of
//! a worker that holds many (shards, partitions, tenants).

use pglock_protocol::steps;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::count_many;
use crate::input;
use crate::session;
use crate::store::{Access, Backend};

/// Renews each lock of `names` (with its RVN from `rvns`) that `owner` holds for
/// the calling role; one row per name, in the order given.  A lock the caller
/// does not hold comes back with `renewed = false` and `rvn` NULL, untouched;
/// nothing raises for it.
// pgrx reads the result columns from the signature, so the row type stays inline.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn pglock_heartbeat_many(
    owner: Option<&str>,
    names: Option<Array<&str>>,
    rvns: Option<Array<i64>>,
    lease: default!(Option<Interval>, "NULL"),
) -> Result<
    TableIterator<
        'static,
        (
            name!(name, String),
            name!(rvn, Option<i64>),
            name!(renewed, bool),
        ),
    >,
    ErrorReport,
> {
    session::refuse_if_read_only(c"pglock_heartbeat_many");
    let owner = input::label("owner", owner)?;
    let locks = input::renewals(
        names.as_ref().map(|names| names.iter().collect()),
        rvns.as_ref().map(|rvns| rvns.iter().collect()),
    )?;
    let lease = input::optional_lease("lease", lease)?;
    let renewed = steps::heartbeat_many(
        &mut Backend::for_current_user(Access::Write)?,
        owner,
        &locks,
        lease.as_ref(),
    );
    let kept = renewed.iter().filter(|rvn| rvn.is_some()).count() as u64;
    count_many(|c| &c.heartbeats, kept);
    count_many(|c| &c.failed_heartbeats, renewed.len() as u64 - kept);
    let rows: Vec<_> = locks
        .iter()
        .zip(renewed)
        .map(|((name, _), rvn)| ((*name).to_owned(), rvn, rvn.is_some()))
        .collect();
    Ok(TableIterator::new(rows))
}
