//! The pglock calls the client makes, as named prepared statements or unnamed
//! ones (see [`StatementMode`]), and their rows as Rust values.
//!
//! Intervals go out as `make_interval(secs => float8)` and come back as
//! `extract(epoch FROM lease)::float8`: tokio-postgres has no interval type.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CancelToken, Client as PgClient, Row, Statement};

use crate::config::{StatementMode, MAX_LEASE};
use crate::error::Error;

const ACQUIRE: &str = "\
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data
  FROM pglock_acquire($1::text, $2::text,
                      lease => make_interval(secs => $3::float8),
                      data => $4::bytea,
                      replace_data => $5::boolean,
                      observed_rvn => $6::bigint)";

// The lease is passed, not left NULL (which keeps each lock's own): the client's
// loss deadline is computed from its configured lease, so each renewal makes the
// server's lease that one again, whatever the row held before.
const HEARTBEAT_MANY: &str = "\
SELECT name, rvn, renewed
  FROM pglock_heartbeat_many($1::text, $2::text[], $3::bigint[],
                             lease => make_interval(secs => $4::float8))";

// wait_timeout is 0, always: the call must not wait in the server, where it
// would hold the client's one connection and keep its renewals waiting. The
// client waits between calls instead (see `semaphore.rs`).
const ACQUIRE_SLOT: &str = "\
SELECT acquired, slot_name, rvn
  FROM pglock_acquire_slot($1::text, $2::text, $3::integer,
                           lease => make_interval(secs => $4::float8),
                           data => $5::bytea,
                           wait_timeout => '0')";

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

/// One row of `pglock_heartbeat_many`: the lock's new RVN if it was renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Renewal {
    pub name: String,
    pub rvn: Option<i64>,
    pub renewed: bool,
}

/// A row of `pglock_acquire_slot`: the slot taken, if one was.
#[derive(Debug, Clone)]
pub(crate) struct SlotRow {
    pub acquired: bool,
    pub slot_name: Option<String>,
    pub rvn: Option<i64>,
}

/// What an acquire or release sends, besides name and owner.
pub(crate) struct AcquireCall<'a> {
    pub lease: Duration,
    pub data: Option<&'a [u8]>,
    pub replace_data: bool,
    pub observed_rvn: Option<i64>,
}

/// pglock's calls: their SQL, parameter types and statement slot. Every
/// parameter and column is of a built-in type (arrays of `text` and `bigint`
/// included): tokio-postgres would look any other up with a named statement of
/// its own, which a pooler in transaction mode cannot keep either.
#[derive(Debug, Clone, Copy)]
enum Call {
    Acquire,
    AcquireSlot,
    HeartbeatMany,
    Release,
    Get,
}

impl Call {
    const ALL: [Call; 5] = [
        Call::Acquire,
        Call::AcquireSlot,
        Call::HeartbeatMany,
        Call::Release,
        Call::Get,
    ];

    fn sql(self) -> &'static str {
        match self {
            Call::Acquire => ACQUIRE,
            Call::AcquireSlot => ACQUIRE_SLOT,
            Call::HeartbeatMany => HEARTBEAT_MANY,
            Call::Release => RELEASE,
            Call::Get => GET,
        }
    }

    /// The types of `$1`, `$2`, ..., as the statement's casts declare them.
    fn types(self) -> &'static [Type] {
        match self {
            Call::Acquire => &[
                Type::TEXT,
                Type::TEXT,
                Type::FLOAT8,
                Type::BYTEA,
                Type::BOOL,
                Type::INT8,
            ],
            Call::AcquireSlot => &[
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::FLOAT8,
                Type::BYTEA,
            ],
            Call::HeartbeatMany => &[Type::TEXT, Type::TEXT_ARRAY, Type::INT8_ARRAY, Type::FLOAT8],
            Call::Release => &[Type::TEXT, Type::TEXT, Type::INT8, Type::BOOL, Type::BYTEA],
            Call::Get => &[Type::TEXT],
        }
    }
}

/// One connection, ready for pglock's calls in the configured [`StatementMode`].
#[derive(Debug)]
pub(crate) struct Sql {
    pg: Arc<PgClient>,
    /// The named statements, in [`Call::ALL`]'s order; `None` when unnamed.
    prepared: Option<Vec<Statement>>,
}

impl Sql {
    /// Makes the connection ready: prepares the statements, or, for unnamed
    /// ones, has the server parse and plan each once (`EXPLAIN`, which runs
    /// nothing). Either way it fails if pglock is not installed (or not on the
    /// `search_path`) in the connection's database.
    pub async fn prepare(pg: Arc<PgClient>, mode: StatementMode) -> Result<Self, Error> {
        let prepared = match mode {
            StatementMode::Prepared => {
                let mut statements = Vec::with_capacity(Call::ALL.len());
                for call in Call::ALL {
                    statements.push(pg.prepare_typed(call.sql(), call.types()).await?);
                }
                Some(statements)
            }
            StatementMode::Unnamed => {
                for call in Call::ALL {
                    let explain = format!("EXPLAIN {}", call.sql());
                    let nulls: Vec<_> = call.types().iter().map(null_of).collect();
                    pg.query_typed(&explain, &typed(call, &nulls)).await?;
                }
                None
            }
        };
        Ok(Self { pg, prepared })
    }

    /// Runs `call` with `params`; every row that comes back.
    async fn query(&self, call: Call, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let rows = match &self.prepared {
            Some(statements) => self.pg.query(&statements[call as usize], params).await?,
            None => {
                let typed = typed(call, params);
                self.pg.query_typed(call.sql(), &typed).await?
            }
        };
        Ok(rows)
    }

    /// Runs `call` with `params`; at most one row comes back.
    async fn query_opt(
        &self,
        call: Call,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let row = match &self.prepared {
            Some(statements) => {
                self.pg
                    .query_opt(&statements[call as usize], params)
                    .await?
            }
            None => {
                let typed = typed(call, params);
                self.pg.query_typed_opt(call.sql(), &typed).await?
            }
        };
        Ok(row)
    }

    /// Runs `call` with `params`; exactly one row comes back.
    async fn query_one(&self, call: Call, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let row = match &self.prepared {
            Some(statements) => {
                self.pg
                    .query_one(&statements[call as usize], params)
                    .await?
            }
            None => {
                let typed = typed(call, params);
                self.pg.query_typed_one(call.sql(), &typed).await?
            }
        };
        Ok(row)
    }

    pub async fn acquire(
        &self,
        name: &str,
        owner: &str,
        call: &AcquireCall<'_>,
    ) -> Result<AcquireRow, Error> {
        let row = self
            .query_one(
                Call::Acquire,
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

    /// One pass over the `slots` slots of semaphore `name`, taking a free one for
    /// `lease` with `data`; never a held one, and never waiting.
    pub async fn acquire_slot(
        &self,
        name: &str,
        owner: &str,
        slots: i32,
        lease: Duration,
        data: Option<&[u8]>,
    ) -> Result<SlotRow, Error> {
        let row = self
            .query_one(
                Call::AcquireSlot,
                &[&name, &owner, &slots, &lease.as_secs_f64(), &data],
            )
            .await?;
        Ok(SlotRow {
            acquired: row.try_get(0)?,
            slot_name: row.try_get(1)?,
            rvn: row.try_get(2)?,
        })
    }

    /// What a cancel request for the connection's running statement needs.
    pub fn cancel_token(&self) -> CancelToken {
        self.pg.cancel_token()
    }

    /// Whether the connection has broken (the server closed it, or it failed).
    pub fn is_closed(&self) -> bool {
        self.pg.is_closed()
    }

    /// Renews, in one statement, each lock of `names` at the RVN in the same
    /// position of `rvns`, for `lease`; one row per name, in the order given.
    pub async fn heartbeat_many(
        &self,
        owner: &str,
        names: &[&str],
        rvns: &[i64],
        lease: Duration,
    ) -> Result<Vec<Renewal>, Error> {
        let rows = self
            .query(
                Call::HeartbeatMany,
                &[&owner, &names, &rvns, &lease.as_secs_f64()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Renewal {
                    name: row.try_get(0)?,
                    rvn: row.try_get(1)?,
                    renewed: row.try_get(2)?,
                })
            })
            .collect()
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
            .query_one(Call::Release, &[&name, &owner, &rvn, &keep, &data])
            .await?;
        Ok(row.try_get(0)?)
    }

    pub async fn get(&self, name: &str) -> Result<Option<LockInfo>, Error> {
        let Some(row) = self.query_opt(Call::Get, &[&name]).await? else {
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

/// `params` paired with the types `call` declares for them.
fn typed<'a>(call: Call, params: &[&'a (dyn ToSql + Sync)]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .copied()
        .zip(call.types().iter().cloned())
        .collect()
}

/// A NULL that encodes as a parameter of type `ty` (one of [`Call::types`]).
fn null_of(ty: &Type) -> &'static (dyn ToSql + Sync) {
    static TEXT: Option<&str> = None;
    static FLOAT8: Option<f64> = None;
    static BYTEA: Option<&[u8]> = None;
    static BOOL: Option<bool> = None;
    static INT8: Option<i64> = None;
    static INT4: Option<i32> = None;
    static TEXT_ARRAY: Option<&[&str]> = None;
    static INT8_ARRAY: Option<&[i64]> = None;
    match *ty {
        Type::FLOAT8 => &FLOAT8,
        Type::TEXT_ARRAY => &TEXT_ARRAY,
        Type::INT8_ARRAY => &INT8_ARRAY,
        Type::BYTEA => &BYTEA,
        Type::BOOL => &BOOL,
        Type::INT8 => &INT8,
        Type::INT4 => &INT4,
        _ => &TEXT,
    }
}

/// A float8 number of seconds as a duration. The server keeps leases above zero
/// and at most a day; anything else (which it never sends) reads as the longest
/// lease, so that a client waiting on it never takes a lock over early.
fn seconds(row: &Row, index: usize) -> Result<Duration, Error> {
    let seconds: f64 = row.try_get(index)?;
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(MAX_LEASE))
}
