//! The pglock calls the client makes, as named prepared statements or unnamed
//! ones (see [`StatementMode`]), and their rows as Rust values.
//!
//! Intervals go out as `make_interval(secs => float8)` and come back as
//! `extract(epoch FROM lease)::float8`: tokio-postgres has no interval type.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
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

// The waits: on a connection of their own (see `waits.rs`), at most
// `wait_timeout` each; a waiting call holds its connection, so the client's
// renewals never go over it.
const ACQUIRE_WAIT: &str = "\
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data
  FROM pglock_acquire_wait($1::text, $2::text,
                           lease => make_interval(secs => $3::float8),
                           data => $4::bytea,
                           replace_data => $5::boolean,
                           wait_timeout => make_interval(secs => $6::float8))";

const ACQUIRE_SLOT_WAIT: &str = "\
SELECT acquired, slot_name, rvn
  FROM pglock_acquire_slot($1::text, $2::text, $3::integer,
                           lease => make_interval(secs => $4::float8),
                           data => $5::bytea,
                           wait_timeout => make_interval(secs => $6::float8))";

const PRELOADED: &str = "SELECT pglock_preloaded()";

const RELEASE: &str = "\
SELECT pglock_release($1::text, $2::text, $3::bigint, keep => $4::boolean, data => $5::bytea)";

const GET: &str = "\
SELECT name, owner, rvn, extract(epoch FROM lease)::float8, data, released
  FROM pglock_get($1::text)";

/// A row of `pglock_acquire` (or `pglock_acquire_wait`): the new holder (us),
/// or the current holder, if there is one to show (none: the lock is free but
/// reserved for waiters queued in the server ahead of us).
#[derive(Debug, Clone)]
pub(crate) struct AcquireRow {
    pub acquired: bool,
    pub holder: Option<HolderRow>,
    pub data: Option<Vec<u8>>,
}

/// The lock's RVN, owner and lease in an acquire's row.
#[derive(Debug, Clone)]
pub(crate) struct HolderRow {
    pub rvn: i64,
    pub owner: String,
    pub lease: Duration,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Acquire,
    HeartbeatMany,
    Release,
    Get,
    AcquireWait,
    AcquireSlotWait,
    Preloaded,
}

/// Which calls a connection is made ready for: the client's own connection
/// makes every call but the waits, which go over connections of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Calls {
    Main,
    Waits,
}

impl Calls {
    fn calls(self) -> &'static [Call] {
        match self {
            Calls::Main => &[Call::Acquire, Call::HeartbeatMany, Call::Release, Call::Get],
            Calls::Waits => &[Call::AcquireWait, Call::AcquireSlotWait, Call::Preloaded],
        }
    }
}

impl Call {
    fn sql(self) -> &'static str {
        match self {
            Call::Acquire => ACQUIRE,
            Call::HeartbeatMany => HEARTBEAT_MANY,
            Call::Release => RELEASE,
            Call::Get => GET,
            Call::AcquireWait => ACQUIRE_WAIT,
            Call::AcquireSlotWait => ACQUIRE_SLOT_WAIT,
            Call::Preloaded => PRELOADED,
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
            Call::AcquireWait => &[
                Type::TEXT,
                Type::TEXT,
                Type::FLOAT8,
                Type::BYTEA,
                Type::BOOL,
                Type::FLOAT8,
            ],
            Call::AcquireSlotWait => &[
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::FLOAT8,
                Type::BYTEA,
                Type::FLOAT8,
            ],
            Call::HeartbeatMany => &[Type::TEXT, Type::TEXT_ARRAY, Type::INT8_ARRAY, Type::FLOAT8],
            Call::Release => &[Type::TEXT, Type::TEXT, Type::INT8, Type::BOOL, Type::BYTEA],
            Call::Get => &[Type::TEXT],
            Call::Preloaded => &[],
        }
    }
}

/// One connection, ready for a set of pglock's calls in the configured
/// [`StatementMode`].
#[derive(Debug)]
pub(crate) struct Sql {
    pg: Arc<PgClient>,
    /// The named statements of its calls; `None` when unnamed.
    prepared: Option<Vec<(Call, Statement)>>,
}

impl Sql {
    /// Makes the connection ready for `calls`: prepares their statements, or,
    /// for unnamed ones, has the server parse and plan each once (`EXPLAIN`,
    /// which runs nothing). Either way it fails if pglock is not installed (or
    /// not on the `search_path`) in the connection's database, or too old for
    /// one of the calls.
    pub async fn prepare(
        pg: Arc<PgClient>,
        mode: StatementMode,
        calls: Calls,
    ) -> Result<Self, Error> {
        let prepared = match mode {
            StatementMode::Prepared => {
                let mut statements = Vec::with_capacity(calls.calls().len());
                for &call in calls.calls() {
                    let statement = pg.prepare_typed(call.sql(), call.types()).await;
                    statements.push((call, statement.map_err(named)?));
                }
                Some(statements)
            }
            StatementMode::Unnamed => {
                for &call in calls.calls() {
                    let explain = format!("EXPLAIN {}", call.sql());
                    let nulls: Vec<_> = call.types().iter().map(null_of).collect();
                    pg.query_typed(&explain, &typed(call, &nulls)).await?;
                }
                None
            }
        };
        Ok(Self { pg, prepared })
    }

    /// The named statement of `call`, if statements are named.
    fn statement(&self, call: Call) -> Option<&Statement> {
        let statements = self.prepared.as_ref()?;
        let found = statements.iter().find(|(named, _)| *named == call);
        Some(
            &found
                .expect("a connection is only asked the calls it was made ready for")
                .1,
        )
    }

    /// Runs `call` with `params`; every row that comes back.
    async fn query(&self, call: Call, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let rows = match self.statement(call) {
            Some(statement) => self.pg.query(statement, params).await.map_err(named)?,
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
        let row = match self.statement(call) {
            Some(statement) => self.pg.query_opt(statement, params).await.map_err(named)?,
            None => {
                let typed = typed(call, params);
                self.pg.query_typed_opt(call.sql(), &typed).await?
            }
        };
        Ok(row)
    }

    /// Runs `call` with `params`; exactly one row comes back.
    async fn query_one(&self, call: Call, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        let row = match self.statement(call) {
            Some(statement) => self.pg.query_one(statement, params).await.map_err(named)?,
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
        acquire_row(&row)
    }

    /// [`Sql::acquire`], waiting in the server at most `wait`.
    pub async fn acquire_wait(
        &self,
        name: &str,
        owner: &str,
        call: &AcquireCall<'_>,
        wait: Duration,
    ) -> Result<AcquireRow, Error> {
        let row = self
            .query_one(
                Call::AcquireWait,
                &[
                    &name,
                    &owner,
                    &call.lease.as_secs_f64(),
                    &call.data,
                    &call.replace_data,
                    &wait.as_secs_f64(),
                ],
            )
            .await?;
        acquire_row(&row)
    }

    /// A slot of the `slots` slots of semaphore `name` for `lease` with `data`,
    /// waiting in the server at most `wait`.
    pub async fn acquire_slot_wait(
        &self,
        name: &str,
        owner: &str,
        slots: i32,
        lease: Duration,
        data: Option<&[u8]>,
        wait: Duration,
    ) -> Result<SlotRow, Error> {
        let row = self
            .query_one(
                Call::AcquireSlotWait,
                &[
                    &name,
                    &owner,
                    &slots,
                    &lease.as_secs_f64(),
                    &data,
                    &wait.as_secs_f64(),
                ],
            )
            .await?;
        Ok(SlotRow {
            acquired: row.try_get(0)?,
            slot_name: row.try_get(1)?,
            rvn: row.try_get(2)?,
        })
    }

    /// Whether the server preloads pglock: then its waits wake at once.
    pub async fn preloaded(&self) -> Result<bool, Error> {
        Ok(self.query_one(Call::Preloaded, &[]).await?.try_get(0)?)
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

/// An error of one of this connection's named statements, from its Parse (when
/// prepared) or its Bind (when run): there, `26000` (no statement of that
/// name) and `42P05` (one already) can only be about the client's own
/// statement, which the server connection does not keep, as behind a pooler
/// in transaction mode; they become [`Error::StatementsNotKept`], which says
/// what to set. Any other stays an [`Error::Database`].
fn named(error: tokio_postgres::Error) -> Error {
    match error.code() {
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME) | Some(&SqlState::DUPLICATE_PSTATEMENT) => {
            Error::StatementsNotKept(error)
        }
        _ => Error::Database(error),
    }
}

fn acquire_row(row: &Row) -> Result<AcquireRow, Error> {
    let rvn: Option<i64> = row.try_get(1)?;
    let holder = match rvn {
        Some(rvn) => Some(HolderRow {
            rvn,
            owner: row.try_get(2)?,
            lease: seconds(row, 3)?,
        }),
        None => None,
    };
    Ok(AcquireRow {
        acquired: row.try_get(0)?,
        holder,
        data: row.try_get(4)?,
    })
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
