//! The four pglock calls as prepared statements, and their rows as Rust values.
//!
//! Intervals go out as `make_interval(secs => float8)` and come back as
//! `extract(epoch FROM lease)::float8`: tokio-postgres has no interval type.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client as PgClient, Row, Statement};

use crate::config::MAX_LEASE;
use crate::error::Error;

const ACQUIRE: &str = "\
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data
  FROM pglock_acquire($1::text, $2::text,
                      lease => make_interval(secs => $3::float8),
                      data => $4::bytea,
                      replace_data => $5::boolean,
                      observed_rvn => $6::bigint)";

const HEARTBEAT: &str = "SELECT pglock_heartbeat($1::text, $2::text, $3::bigint)";

const RELEASE: &str = "\
SELECT pglock_release($1::text, $2::text, $3::bigint, keep => $4::boolean, data => $5::bytea)";

const GET: &str = "\
SELECT name, owner, rvn, extract(epoch FROM lease)::float8, data, released
  FROM pglock_get($1::text)";

/// A row of `pglock_acquire`: the new holder (us) or the current holder.
#[derive(Debug, Clone)]
pub(crate) struct AcquireRow {
    pub acquired: bool,
    pub rvn: i64,
    pub owner: String,
    pub lease: Duration,
    pub data: Option<Vec<u8>>,
}

/// A lock as `pglock_get` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub name: String,
    pub owner: String,
    /// The lock's current record version number.
    pub rvn: i64,
    /// The lease its holder asked for.
    pub lease: Duration,
    pub data: Option<Vec<u8>>,
    /// Released with `keep => true`: free to acquire, data kept.
    pub released: bool,
}

/// What an acquire or release sends, besides name and owner.
pub(crate) struct AcquireCall<'a> {
    pub lease: Duration,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
    pub observed_rvn: Option<i64>,
}

/// One connection with pglock's statements prepared on it.
#[derive(Debug)]
pub(crate) struct Sql {
    pg: Arc<PgClient>,
    acquire: Statement,
    heartbeat: Statement,
    release: Statement,
    get: Statement,
}

impl Sql {
    /// Prepares the statements; fails if pglock is not installed (or not on the
    /// `search_path`) in the connection's database.
    pub async fn prepare(pg: Arc<PgClient>) -> Result<Self, Error> {
        Ok(Self {
            acquire: pg.prepare(ACQUIRE).await?,
            heartbeat: pg.prepare(HEARTBEAT).await?,
            release: pg.prepare(RELEASE).await?,
            get: pg.prepare(GET).await?,
            pg,
        })
    }

    pub async fn acquire(
        &self,
        name: &str,
        owner: &str,
        call: &AcquireCall<'_>,
    ) -> Result<AcquireRow, Error> {
        let row = self
            .pg
            .query_one(
                &self.acquire,
                &[
                    &name,
                    &owner,
                    &call.lease.as_secs_f64(),
                    &call.data,
                    &call.replace_data,
                    &call.observed_rvn,
                ],
            )
            .await?;
        Ok(AcquireRow {
            acquired: row.try_get(0)?,
            rvn: row.try_get(1)?,
            owner: row.try_get(2)?,
            lease: seconds(&row, 3)?,
            data: row.try_get(4)?,
        })
    }

    /// Whether the connection has broken (the server closed it, or it failed).
    pub fn is_closed(&self) -> bool {
        self.pg.is_closed()
    }

    /// Renews the lease; returns the new RVN.
    pub async fn heartbeat(&self, name: &str, owner: &str, rvn: i64) -> Result<i64, Error> {
        let row = self
            .pg
            .query_one(&self.heartbeat, &[&name, &owner, &rvn])
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Whether the lock was held at `rvn` and is now released.
    pub async fn release(
        &self,
        name: &str,
        owner: &str,
        rvn: i64,
        keep: bool,
        data: Option<&[u8]>,
    ) -> Result<bool, Error> {
        let row = self
            .pg
            .query_one(&self.release, &[&name, &owner, &rvn, &keep, &data])
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn get(&self, name: &str) -> Result<Option<LockInfo>, Error> {
        let Some(row) = self.pg.query_opt(&self.get, &[&name]).await? else {
            return Ok(None);
        };
        Ok(Some(LockInfo {
            name: row.try_get(0)?,
            owner: row.try_get(1)?,
            rvn: row.try_get(2)?,
            lease: seconds(&row, 3)?,
            data: row.try_get(4)?,
            released: row.try_get(5)?,
        }))
    }
}

/// A float8 number of seconds as a duration. The server keeps leases above zero
/// and at most a day; anything else (which it never sends) reads as the longest
/// lease, so that a client waiting on it never takes a lock over early.
fn seconds(row: &Row, index: usize) -> Result<Duration, Error> {
    let seconds: f64 = row.try_get(index)?;
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(MAX_LEASE))
}
