//! Hostile input: thousands of calls to every pglock function with random
//! arguments (NULLs, empty and over-long labels, odd Unicode, SQL metacharacters,
//! huge data, zero/negative/enormous leases, wrong and extreme RVNs), checked
//! call by call against a model of the table.  The model predicts each call's
//! outcome exactly (its result, or the one SQLSTATE it raises); after each call
//! the lock it named must be, as another session reads it, what the model says;
//! every RVN a call returns is larger than any before it; the backend never
//! crashes; and the locks another role holds are untouched.
//!
//! The run is seeded: set PGLOCK_FUZZ_SEED to replay one; PGLOCK_FUZZ_CALLS sets
//! the number of calls (default 4000).

use std::collections::{BTreeMap, HashMap};

use pglock_tests::{connect, connect_as, pglock_role, unique_name, Client, SqlState};

/// xorshift64*: small, seedable, good enough to pick arguments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// Arguments

/// Hostile and ordinary text for lock names and owner labels.  Names carry the
/// run's `prefix`, so that no other run or test meets them; the cases on a length
/// limit are padded to exactly that many characters.
fn label(rng: &mut Rng, prefix: &str, known: &[String]) -> Option<String> {
    let padded = |fill: char, chars: usize| {
        let mut text = prefix.to_owned();
        while text.chars().count() < chars {
            text.push(fill);
        }
        text
    };
    Some(match rng.below(16) {
        0 => return None,
        1 => String::new(),
        2 => format!("{prefix} "),
        3 => padded('x', 255),
        4 => padded('x', 256),
        5 => padded('é', 255), // 255 characters in more bytes: allowed
        6 => padded('é', 256),
        7 => format!("{prefix}{}", "🔒".repeat(rng.below(300))),
        8 => format!("{prefix}'; DROP TABLE pglock.locks; --"),
        9 => format!("{prefix}%_\\ $1 $$ \" ' ) ; --"),
        10 => format!("{prefix}\u{FFFD}\u{202E}\u{0301}\u{FEFF}\\xfffe"),
        11 => format!("{prefix}{}", "y".repeat(100_000)),
        _ => rng.pick(known).clone(),
    })
}

/// Leases as SQL text, with their length in microseconds counted as pglock
/// documents it: a month is 30 days.
const LEASES: [(&str, i128); 12] = [
    ("0", 0),
    ("-1 second", -1_000_000),
    ("1 microsecond", 1),
    // The server, which takes over a holder it saw stand still for its lease,
    // does so at the next call for a microsecond's, and never within a run (at
    // most RUN_LIMIT) for the others (see `acquire_decision`).
    ("20 seconds", 20_000_000),
    ("1 day", DAY),
    ("1 day 1 microsecond", DAY + 1),
    ("1 mon -29 days", 30 * DAY - 29 * DAY), // one day, written oddly
    ("1 mon", 30 * DAY),
    ("178000000 years", 178_000_000 * 12 * 30 * DAY),
    ("-178000000 years", -178_000_000 * 12 * 30 * DAY),
    ("2147483647 days", 2_147_483_647 * DAY),
    (
        "-2147483648 days 2562047788 hours",
        -2_147_483_648 * DAY + 2_562_047_788 * 3_600_000_000,
    ),
];
const DAY: i128 = 86_400_000_000;

/// The leases the server's interval input accepts: PostgreSQL 14 rejects
/// "2562047788 hours" (22015) before pglock is called, so such a lease would
/// test the server, not pglock.
fn parseable_leases(client: &mut Client) -> Vec<&'static str> {
    LEASES
        .into_iter()
        .map(|(lease, _)| lease)
        .filter(
            |lease| match client.query_one("SELECT $1::text::interval", &[lease]) {
                Ok(_) => true,
                Err(error) if error.code() == Some(&SqlState::INTERVAL_FIELD_OVERFLOW) => {
                    println!("lease {lease:?} not used: this server's interval input rejects it");
                    false
                }
                Err(error) => panic!("{lease:?}::interval: {error}"),
            },
        )
        .collect()
}

fn lease(rng: &mut Rng, leases: &[&'static str]) -> Option<&'static str> {
    if rng.chance(10) {
        return None;
    }
    Some(rng.pick(leases)).copied()
}

fn lease_micros(lease: &str) -> i128 {
    LEASES
        .iter()
        .find(|(text, _)| *text == lease)
        .map(|(_, micros)| *micros)
        .unwrap_or_else(|| panic!("lease {lease:?} is not in LEASES"))
}

fn rvn(rng: &mut Rng, current: Option<i64>) -> Option<i64> {
    match rng.below(9) {
        0 => None,
        1 => Some(0),
        2 => Some(-1),
        3 => Some(i64::MIN),
        4 => Some(i64::MAX),
        5 => Some(1),
        6 => Some((rng.next() >> 1) as i64),
        _ => current.or(Some(1)),
    }
}

fn data(rng: &mut Rng) -> Option<Vec<u8>> {
    match rng.below(10) {
        0 | 1 => None,
        2 => Some(Vec::new()),
        3 => Some(vec![0u8, 0xff, b'\'', b'\\', 0xfe]),
        // Rare: a megabyte on the limit, one byte over, and far over.
        4 if rng.chance(10) => Some(vec![7u8; 1 << 20]),
        5 if rng.chance(10) => Some(vec![7u8; (1 << 20) + 1]),
        6 if rng.chance(5) => Some(vec![7u8; 8 << 20]),
        _ => Some((0..rng.below(64)).map(|_| rng.next() as u8).collect()),
    }
}

fn flag(rng: &mut Rng) -> Option<bool> {
    match rng.below(5) {
        0 => None,
        1 | 2 => Some(true),
        _ => Some(false),
    }
}

// ---------------------------------------------------------------------------
// The model: what pglock.locks holds, and pglock's rules as one small function
// each, so that a change of semantics is a change of one rule.

/// The roles that hold locks here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Fuzzer,
    Witness,
}

const FUZZER_ROLE: &str = "fuzz_fuzzer";
const WITNESS_ROLE: &str = "fuzz_witness";

impl Role {
    fn from_name(name: &str) -> Role {
        match name {
            FUZZER_ROLE => Role::Fuzzer,
            WITNESS_ROLE => Role::Witness,
            other => panic!("a lock held by unexpected role {other}"),
        }
    }
}

/// An RVN that a call wrote but did not return (a kept release): the model
/// learns it from the table, after checking that it is larger than any before.
const UNSEEN: i64 = 0;

/// One row of pglock.locks.  `lease` is the interval as PostgreSQL prints it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    owner: String,
    rvn: i64,
    lease: String,
    data: Option<Vec<u8>>,
    released: bool,
    holder: Role,
}

/// The arguments of one call, NULL as None.
#[derive(Debug, Clone)]
enum Call {
    Acquire {
        name: Option<String>,
        owner: Option<String>,
        lease: Option<&'static str>,
        data: Option<Vec<u8>>,
        replace_data: Option<bool>,
        observed_rvn: Option<i64>,
    },
    Heartbeat {
        name: Option<String>,
        owner: Option<String>,
        rvn: Option<i64>,
        data: Option<Vec<u8>>,
        replace_data: Option<bool>,
        lease: Option<&'static str>,
    },
    Release {
        name: Option<String>,
        owner: Option<String>,
        rvn: Option<i64>,
        keep: Option<bool>,
        data: Option<Vec<u8>>,
    },
    Get {
        name: Option<String>,
    },
}

impl Call {
    fn function(&self) -> &'static str {
        match self {
            Call::Acquire { .. } => "acquire",
            Call::Heartbeat { .. } => "heartbeat",
            Call::Release { .. } => "release",
            Call::Get { .. } => "get",
        }
    }

    fn name(&self) -> Option<&String> {
        match self {
            Call::Acquire { name, .. }
            | Call::Heartbeat { name, .. }
            | Call::Release { name, .. }
            | Call::Get { name } => name.as_ref(),
        }
    }

    /// For failure messages: the call with long arguments cut short.
    fn describe(&self) -> String {
        let described = format!("{self:?}");
        if described.len() > 600 {
            format!("{}...", described.chars().take(600).collect::<String>())
        } else {
            described
        }
    }
}

/// What a call returns: a row or value, or an error's SQLSTATE.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Error(SqlState),
    Acquire {
        acquired: bool,
        rvn: i64,
        owner: String,
        lease: String,
        data: Option<Vec<u8>>,
    },
    Heartbeat {
        rvn: i64,
    },
    Release(bool),
    Get(Option<Row>),
}

/// What the model predicts for a call, and the change it makes to the lock.
struct Prediction {
    answer: Answer,
    change: Change,
}

enum Change {
    Nothing,
    /// The lock becomes this row; an RVN of [`UNSEEN`] is the call's new RVN.
    Put(Row),
    Delete,
}

/// Rule: a lock name or owner label is 1 to 255 characters.
fn check_label(value: Option<&String>) -> Result<&String, SqlState> {
    let value = value.ok_or(SqlState::NULL_VALUE_NOT_ALLOWED)?;
    if value.is_empty() {
        return Err(SqlState::INVALID_PARAMETER_VALUE);
    }
    if value.chars().count() > 255 {
        return Err(SqlState::STRING_DATA_RIGHT_TRUNCATION);
    }
    Ok(value)
}

/// Rule: a lease is more than 0 and at most one day (a month counts 30 days).
fn check_lease(lease: Option<&'static str>) -> Result<&'static str, SqlState> {
    let lease = lease.ok_or(SqlState::NULL_VALUE_NOT_ALLOWED)?;
    let micros = lease_micros(lease);
    if micros <= 0 || micros > DAY {
        return Err(SqlState::INVALID_PARAMETER_VALUE);
    }
    Ok(lease)
}

/// Rule: an RVN argument is positive (the sequence starts at 1).
fn check_rvn(rvn: Option<i64>) -> Result<i64, SqlState> {
    let rvn = rvn.ok_or(SqlState::NULL_VALUE_NOT_ALLOWED)?;
    if rvn <= 0 {
        return Err(SqlState::INVALID_PARAMETER_VALUE);
    }
    Ok(rvn)
}

/// Rule: data is at most 1 MiB.
fn check_data(data: Option<&Vec<u8>>) -> Result<(), SqlState> {
    match data {
        Some(bytes) if bytes.len() > 1 << 20 => Err(SqlState::PROGRAM_LIMIT_EXCEEDED),
        _ => Ok(()),
    }
}

/// Rule: a switch (replace_data, keep) is not NULL.
fn check_flag(flag: Option<bool>) -> Result<bool, SqlState> {
    flag.ok_or(SqlState::NULL_VALUE_NOT_ALLOWED)
}

/// Rule: who gets a lock.  A missing lock is created and a released one taken;
/// a held one is taken over by a caller that names its current RVN (having seen
/// it stand still for the holder's lease) if the caller is the holder's role,
/// and by any caller once the server saw it stand still for its lease: here,
/// a lease of a microsecond always, at the next call (and the other leases, 20
/// seconds or more, never within a run, which stops at `RUN_LIMIT`).
fn acquire_decision(row: Option<&Row>, observed_rvn: Option<i64>, caller: Role) -> Decision {
    match row {
        None => Decision::Create,
        Some(row) if row.released => Decision::TakeOver,
        Some(row) if observed_rvn == Some(row.rvn) && row.holder == caller => Decision::TakeOver,
        Some(row) if row.lease == ONE_MICROSECOND => Decision::TakeOver,
        Some(_) => Decision::Refuse,
    }
}

/// A lease of "1 microsecond" as PostgreSQL prints it.
const ONE_MICROSECOND: &str = "00:00:00.000001";

/// The longest a run goes on: less than the shortest lease but one, which the
/// model counts as never running out.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

enum Decision {
    Create,
    TakeOver,
    Refuse,
}

/// Rule: the data a write stores: `data` if given, or if `replace_data` asks to
/// store even NULL; otherwise the lock keeps what it has, if the caller may
/// inherit it (the lock was its own role's), else nothing.
fn stored_data(
    existing: Option<&Vec<u8>>,
    data: Option<&Vec<u8>>,
    replace: bool,
    inherit: bool,
) -> Option<Vec<u8>> {
    if replace || data.is_some() || !inherit {
        data.cloned()
    } else {
        existing.cloned()
    }
}

/// Rule: the data a caller sees of a lock (a refused acquire, pglock_get): its
/// holder role's private checkpoint, NULL for any other role.
fn visible_data(row: &Row, caller: Role) -> Option<Vec<u8>> {
    row.data.clone().filter(|_| row.holder == caller)
}

/// Rule: whether `owner` at `rvn`, acting as `caller`, holds the lock, and if
/// not, why: a heartbeat raises 55000 for a missing or released lock, another
/// owner or another RVN (checked in that order), and 42501 when owner and RVN
/// match but another role acquired the lock.
fn holds(row: Option<&Row>, owner: &str, rvn: i64, caller: Role) -> Result<(), SqlState> {
    match row {
        None => Err(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        Some(row) if row.released || row.owner != owner || row.rvn != rvn => {
            Err(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
        }
        Some(row) if row.holder != caller => Err(SqlState::INSUFFICIENT_PRIVILEGE),
        Some(_) => Ok(()),
    }
}

/// Rule: a release by a caller that does not hold the lock returns false, except
/// that another role naming owner and RVN exactly gets 42501.  (When a release
/// of a lock you do not hold is always false, map the 42501 to false here.)
fn release_refusal(not_held: SqlState) -> Result<bool, SqlState> {
    if not_held == SqlState::INSUFFICIENT_PRIVILEGE {
        Err(not_held)
    } else {
        Ok(false)
    }
}

/// Rule: a release that deletes the lock refuses data, which would be lost.
fn check_data_kept(keep: bool, data: Option<&Vec<u8>>) -> Result<(), SqlState> {
    if !keep && data.is_some() {
        return Err(SqlState::INVALID_PARAMETER_VALUE);
    }
    Ok(())
}

struct Model {
    rows: BTreeMap<String, Row>,
    /// The largest RVN seen: every new one must be larger.
    max_rvn: i64,
    /// Each lease text as PostgreSQL prints it.
    printed_leases: HashMap<&'static str, String>,
}

impl Model {
    fn printed(&self, lease: &str) -> String {
        self.printed_leases[lease].clone()
    }

    /// The answer `caller` gets for `call`; arguments are checked in the order
    /// of the function's signature, and the first bad one decides the SQLSTATE.
    fn predict(&self, call: &Call, caller: Role) -> Prediction {
        let raised = |state| Prediction {
            answer: Answer::Error(state),
            change: Change::Nothing,
        };
        let predicted = match call {
            Call::Acquire {
                name,
                owner,
                lease,
                data,
                replace_data,
                observed_rvn,
            } => (|| {
                let name = check_label(name.as_ref())?;
                let owner = check_label(owner.as_ref())?;
                let lease = check_lease(*lease)?;
                check_data(data.as_ref())?;
                let replace = check_flag(*replace_data)?;
                if let Some(observed) = observed_rvn {
                    check_rvn(Some(*observed))?;
                }
                Ok(self.acquire(
                    name,
                    owner,
                    lease,
                    data.as_ref(),
                    replace,
                    *observed_rvn,
                    caller,
                ))
            })(),
            Call::Heartbeat {
                name,
                owner,
                rvn,
                data,
                replace_data,
                lease,
            } => (|| {
                let name = check_label(name.as_ref())?;
                let owner = check_label(owner.as_ref())?;
                let rvn = check_rvn(*rvn)?;
                check_data(data.as_ref())?;
                let replace = check_flag(*replace_data)?;
                let lease = lease.map(|lease| check_lease(Some(lease))).transpose()?;
                let row = self.rows.get(name);
                holds(row, owner, rvn, caller)?;
                let row = row.expect("a held lock");
                Ok(Prediction {
                    answer: Answer::Heartbeat { rvn: UNSEEN },
                    change: Change::Put(Row {
                        rvn: UNSEEN,
                        data: stored_data(row.data.as_ref(), data.as_ref(), replace, true),
                        lease: lease.map_or_else(|| row.lease.clone(), |lease| self.printed(lease)),
                        ..row.clone()
                    }),
                })
            })(),
            Call::Release {
                name,
                owner,
                rvn,
                keep,
                data,
            } => (|| {
                let name = check_label(name.as_ref())?;
                let owner = check_label(owner.as_ref())?;
                let rvn = check_rvn(*rvn)?;
                let keep = check_flag(*keep)?;
                check_data(data.as_ref())?;
                check_data_kept(keep, data.as_ref())?;
                let row = self.rows.get(name);
                if let Err(not_held) = holds(row, owner, rvn, caller) {
                    return release_refusal(not_held).map(|released| Prediction {
                        answer: Answer::Release(released),
                        change: Change::Nothing,
                    });
                }
                let row = row.expect("a held lock");
                let change = if keep {
                    Change::Put(Row {
                        rvn: UNSEEN,
                        released: true,
                        data: data.clone().or_else(|| row.data.clone()),
                        ..row.clone()
                    })
                } else {
                    Change::Delete
                };
                Ok(Prediction {
                    answer: Answer::Release(true),
                    change,
                })
            })(),
            Call::Get { name } => check_label(name.as_ref()).map(|name| Prediction {
                answer: Answer::Get(self.rows.get(name).map(|row| Row {
                    data: visible_data(row, caller),
                    ..row.clone()
                })),
                change: Change::Nothing,
            }),
        };
        predicted.unwrap_or_else(raised)
    }

    #[allow(clippy::too_many_arguments)]
    fn acquire(
        &self,
        name: &str,
        owner: &str,
        lease: &str,
        data: Option<&Vec<u8>>,
        replace: bool,
        observed_rvn: Option<i64>,
        caller: Role,
    ) -> Prediction {
        let row = self.rows.get(name);
        let taken = |data: Option<Vec<u8>>| Prediction {
            answer: Answer::Acquire {
                acquired: true,
                rvn: UNSEEN,
                owner: owner.to_owned(),
                lease: self.printed(lease),
                data: data.clone(),
            },
            change: Change::Put(Row {
                owner: owner.to_owned(),
                rvn: UNSEEN,
                lease: self.printed(lease),
                data,
                released: false,
                holder: caller,
            }),
        };
        match acquire_decision(row, observed_rvn, caller) {
            // A new lock has no data to keep: it stores what was given.
            Decision::Create => taken(data.cloned()),
            Decision::TakeOver => taken(stored_data(
                row.and_then(|row| row.data.as_ref()),
                data,
                replace,
                row.is_none_or(|row| row.holder == caller),
            )),
            Decision::Refuse => {
                let row = row.expect("a refusal names a holder");
                Prediction {
                    answer: Answer::Acquire {
                        acquired: false,
                        rvn: row.rvn,
                        owner: row.owner.clone(),
                        lease: row.lease.clone(),
                        data: visible_data(row, caller),
                    },
                    change: Change::Nothing,
                }
            }
        }
    }

    /// A new RVN from a call: larger than any before it.
    fn new_rvn(&mut self, rvn: i64, what: &str) -> i64 {
        assert!(
            rvn > self.max_rvn,
            "{what}: new RVN {rvn} is not larger than {} seen before",
            self.max_rvn
        );
        self.max_rvn = rvn;
        rvn
    }
}

// ---------------------------------------------------------------------------
// Running calls and reading the table

struct Statements {
    acquire: postgres::Statement,
    acquire_defaults: postgres::Statement,
    heartbeat: postgres::Statement,
    release: postgres::Statement,
    get: postgres::Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Statements {
        let acquire_columns = "acquired, rvn, owner, lease::text, data";
        Statements {
            acquire: client
                .prepare(&format!(
                    "SELECT {acquire_columns} FROM pglock_acquire($1::text, $2::text, \
                     $3::text::interval, $4::bytea, $5::bool, $6::int8)"
                ))
                .unwrap(),
            acquire_defaults: client
                .prepare(&format!(
                    "SELECT {acquire_columns} FROM pglock_acquire($1::text, $2::text)"
                ))
                .unwrap(),
            heartbeat: client
                .prepare(
                    "SELECT pglock_heartbeat($1::text, $2::text, $3::int8, $4::bytea, \
                     $5::bool, $6::text::interval)",
                )
                .unwrap(),
            release: client
                .prepare("SELECT pglock_release($1::text, $2::text, $3::int8, $4::bool, $5::bytea)")
                .unwrap(),
            get: client
                .prepare("SELECT owner, rvn, lease::text, data, released FROM pglock_get($1::text)")
                .unwrap(),
        }
    }
}

/// Run `call` as `client` (whose role is the fuzzer's).
fn run(client: &mut Client, statements: &Statements, call: &Call, defaults: bool) -> Answer {
    let acquire_row = |row: postgres::Row| Answer::Acquire {
        acquired: row.get(0),
        rvn: row.get(1),
        owner: row.get(2),
        lease: row.get(3),
        data: row.get(4),
    };
    let result = match call {
        Call::Acquire { name, owner, .. } if defaults => client
            .query_one(&statements.acquire_defaults, &[name, owner])
            .map(acquire_row),
        Call::Acquire {
            name,
            owner,
            lease,
            data,
            replace_data,
            observed_rvn,
        } => client
            .query_one(
                &statements.acquire,
                &[name, owner, lease, data, replace_data, observed_rvn],
            )
            .map(acquire_row),
        Call::Heartbeat {
            name,
            owner,
            rvn,
            data,
            replace_data,
            lease,
        } => client
            .query_one(
                &statements.heartbeat,
                &[name, owner, rvn, data, replace_data, lease],
            )
            .map(|row| Answer::Heartbeat { rvn: row.get(0) }),
        Call::Release {
            name,
            owner,
            rvn,
            keep,
            data,
        } => client
            .query_one(&statements.release, &[name, owner, rvn, keep, data])
            .map(|row| Answer::Release(row.get(0))),
        Call::Get { name } => client.query_opt(&statements.get, &[name]).map(|row| {
            Answer::Get(row.map(|row| Row {
                owner: row.get(0),
                rvn: row.get(1),
                lease: row.get(2),
                data: row.get(3),
                released: row.get(4),
                // pglock_get does not say; the model's row is compared field by field.
                holder: Role::Fuzzer,
            }))
        }),
    };
    result.unwrap_or_else(|error| {
        let state = error
            .code()
            .unwrap_or_else(|| panic!("{}: no SQLSTATE in {error}", call.describe()))
            .clone();
        Answer::Error(state)
    })
}

const TABLE_COLUMNS: &str = "name, owner, rvn, lease::text, data, released, holder_role::text";

fn table_row(row: &postgres::Row) -> (String, Row) {
    (
        row.get(0),
        Row {
            owner: row.get(1),
            rvn: row.get(2),
            lease: row.get(3),
            data: row.get(4),
            released: row.get(5),
            holder: Role::from_name(row.get(6)),
        },
    )
}

/// The lock `name` as the superuser reads it from another session.
fn read_lock(admin: &mut Client, name: &str) -> Option<Row> {
    admin
        .query_opt(
            &format!("SELECT {TABLE_COLUMNS} FROM pglock.locks WHERE name = $1"),
            &[&name],
        )
        .unwrap()
        .map(|row| table_row(&row).1)
}

/// Every lock whose name starts with one of `prefixes`.
fn read_locks(admin: &mut Client, prefixes: &[&str]) -> BTreeMap<String, Row> {
    let prefixes: Vec<String> = prefixes.iter().map(|prefix| prefix.to_string()).collect();
    admin
        .query(
            &format!(
                "SELECT {TABLE_COLUMNS} FROM pglock.locks \
                  WHERE EXISTS (SELECT FROM unnest($1::text[]) p WHERE starts_with(name, p))"
            ),
            &[&prefixes],
        )
        .unwrap()
        .iter()
        .map(table_row)
        .collect()
}

/// Every lock with `prefix`, as text with its last write's time, through the superuser.
fn snapshot(client: &mut Client, prefix: &str) -> Vec<String> {
    client
        .query(
            "SELECT format('%s|%s|%s|%s|%s|%s|%s|%s', name, owner, rvn, lease, md5(data), \
                    released, holder_role, updated_at) \
               FROM pglock.locks WHERE starts_with(name, $1) ORDER BY name",
            &[&prefix],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Compare what a call answered with the prediction; new RVNs are checked to
/// grow and filled into the predicted change.
fn check_answer(model: &mut Model, what: &str, predicted: &mut Prediction, answer: Answer) {
    let new_rvn = match (&predicted.answer, &answer) {
        (
            Answer::Acquire { acquired: true, .. },
            Answer::Acquire {
                acquired: true,
                rvn,
                ..
            },
        )
        | (Answer::Heartbeat { .. }, Answer::Heartbeat { rvn }) => Some(*rvn),
        _ => None,
    };
    if let Some(rvn) = new_rvn {
        model.new_rvn(rvn, what);
        match &mut predicted.answer {
            Answer::Acquire { rvn: expected, .. } | Answer::Heartbeat { rvn: expected } => {
                *expected = rvn
            }
            _ => unreachable!("only acquires and heartbeats return a new RVN"),
        }
        if let Change::Put(row) = &mut predicted.change {
            row.rvn = rvn;
        }
    }
    if let (Answer::Get(Some(expected)), Answer::Get(Some(_))) = (&mut predicted.answer, &answer) {
        // pglock_get does not show the holder's role: compare the rest.
        expected.holder = Role::Fuzzer;
    }
    assert_eq!(answer, predicted.answer, "{what}");
}

/// Apply the predicted change, then compare the named lock in the table with the
/// model.  A kept release's new RVN is learned here.
fn check_lock(model: &mut Model, admin: &mut Client, what: &str, name: &str, change: Change) {
    match change {
        Change::Nothing => {}
        Change::Delete => {
            model.rows.remove(name);
        }
        Change::Put(row) => {
            model.rows.insert(name.to_owned(), row);
        }
    }
    let found = read_lock(admin, name);
    if let (Some(expected), Some(found)) = (model.rows.get(name), &found) {
        if expected.rvn == UNSEEN {
            let rvn = model.new_rvn(found.rvn, what);
            model.rows.get_mut(name).expect("just read").rvn = rvn;
        }
    }
    assert_eq!(
        found.as_ref(),
        model.rows.get(name),
        "{what}: the lock in the table"
    );
}

#[test]
fn random_and_hostile_arguments_get_the_answers_a_model_predicts() {
    let seed: u64 = std::env::var("PGLOCK_FUZZ_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let calls: usize = std::env::var("PGLOCK_FUZZ_CALLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(4000);
    println!("PGLOCK_FUZZ_SEED={seed} PGLOCK_FUZZ_CALLS={calls}");
    let mut rng = Rng(seed);
    let mut admin = connect();

    let leases = parseable_leases(&mut admin);
    let printed_leases = leases
        .iter()
        .map(|lease| {
            let printed: String = admin
                .query_one("SELECT $1::text::interval::text", &[lease])
                .unwrap()
                .get(0);
            (*lease, printed)
        })
        .collect();
    let mut model = Model {
        rows: BTreeMap::new(),
        max_rvn: 0,
        printed_leases,
    };

    // Another role holds locks whose names the fuzzer uses too.
    let witness_prefix = unique_name("fuzz-witness");
    let mut witness = connect_as(&pglock_role(WITNESS_ROLE));
    let mut witness_names = Vec::new();
    for n in 0..8 {
        let name = format!("{witness_prefix}-{n}");
        let row = witness
            .query_one(
                "SELECT rvn, lease::text FROM pglock_acquire($1, 'witness', '1 day', '\\x0102'::bytea)",
                &[&name],
            )
            .unwrap();
        let rvn = model.new_rvn(row.get(0), "the witness's acquire");
        model.rows.insert(
            name.clone(),
            Row {
                owner: "witness".to_owned(),
                rvn,
                lease: row.get(1),
                data: Some(vec![1, 2]),
                released: false,
                holder: Role::Witness,
            },
        );
        witness_names.push(name);
    }
    let witnesses_before = snapshot(&mut admin, &witness_prefix);

    let own_prefix = unique_name("fuzz");
    let mut known_names: Vec<String> = (0..6).map(|n| format!("{own_prefix}-{n}")).collect();
    known_names.extend(witness_names.iter().cloned());
    let known_owners: Vec<String> = ["witness", "fuzzer-a", "fuzzer-b"]
        .map(String::from)
        .to_vec();
    let prefixes = [own_prefix.as_str(), witness_prefix.as_str()];
    assert_eq!(read_locks(&mut admin, &prefixes), model.rows);

    let mut fuzzer = connect_as(&pglock_role(FUZZER_ROLE));
    let statements = Statements::prepare(&mut fuzzer);
    let mut outcomes: BTreeMap<(&str, String), usize> = BTreeMap::new();

    let started = std::time::Instant::now();
    for number in 0..calls {
        if started.elapsed() > RUN_LIMIT {
            println!("stopped after {number} calls at {RUN_LIMIT:?}: the model counts 20 s leases as live");
            break;
        }
        let name = label(&mut rng, &own_prefix, &known_names);
        let current = name.as_ref().and_then(|name| model.rows.get(name)).cloned();
        let owner = match &current {
            Some(row) if row.holder == Role::Fuzzer && rng.chance(60) => Some(row.owner.clone()),
            // Another role's owner label, guessed right.
            Some(row) if row.holder == Role::Witness && rng.chance(50) => Some(row.owner.clone()),
            _ => label(&mut rng, "", &known_owners),
        };
        let current_rvn = current.as_ref().map(|row| row.rvn);
        let function = *rng.pick(&["acquire", "acquire", "heartbeat", "release", "get"]);
        let defaults = function == "acquire" && rng.chance(20);
        let call = match function {
            "acquire" if defaults => Call::Acquire {
                name,
                owner,
                lease: Some("20 seconds"),
                data: None,
                replace_data: Some(false),
                observed_rvn: None,
            },
            // observed_rvn often names a witness's current RVN, as another role
            // reading it from pglock_locks would: the witness's lease has not run
            // out, so its lock stays untouched, as the witness check at the end
            // shows.
            "acquire" => Call::Acquire {
                observed_rvn: rvn(&mut rng, current_rvn),
                name,
                owner,
                lease: lease(&mut rng, &leases),
                data: data(&mut rng),
                replace_data: flag(&mut rng),
            },
            "heartbeat" => Call::Heartbeat {
                name,
                owner,
                rvn: rvn(&mut rng, current_rvn),
                data: data(&mut rng),
                replace_data: flag(&mut rng),
                lease: lease(&mut rng, &leases).filter(|_| rng.chance(30)),
            },
            "release" => Call::Release {
                name,
                owner,
                rvn: rvn(&mut rng, current_rvn),
                keep: flag(&mut rng),
                data: data(&mut rng),
            },
            _ => Call::Get { name },
        };

        let what = format!("call {number} (seed {seed}): {}", call.describe());
        let mut predicted = model.predict(&call, Role::Fuzzer);
        let answer = run(&mut fuzzer, &statements, &call, defaults);
        let outcome = match &answer {
            Answer::Error(state) => state.code().to_owned(),
            Answer::Acquire { acquired, .. } => format!("ok {acquired}"),
            Answer::Release(released) => format!("ok {released}"),
            Answer::Heartbeat { .. } => "ok".to_owned(),
            Answer::Get(row) => format!("ok {}", row.is_some()),
        };
        check_answer(&mut model, &what, &mut predicted, answer);
        if let Some(name) = call.name().filter(|name| check_label(Some(name)).is_ok()) {
            check_lock(&mut model, &mut admin, &what, name, predicted.change);
        }
        *outcomes.entry((call.function(), outcome)).or_default() += 1;
        // The connection survived whatever just happened.
        fuzzer
            .query_one("SELECT 1", &[])
            .expect("the backend is alive");
        if number % 250 == 249 {
            assert_eq!(
                read_locks(&mut admin, &prefixes),
                model.rows,
                "after call {number}: every lock"
            );
        }
    }

    assert_eq!(read_locks(&mut admin, &prefixes), model.rows, "every lock");
    assert_eq!(
        snapshot(&mut admin, &witness_prefix),
        witnesses_before,
        "another role's locks are untouched"
    );
    for ((function, outcome), count) in &outcomes {
        println!("{function:<10} {outcome:<12} {count}");
    }
    // The run reached the interesting places.
    for (function, outcome) in [
        ("acquire", "ok true"),
        ("acquire", "ok false"),
        ("heartbeat", "ok"),
        ("heartbeat", "55000"),
        ("release", "ok true"),
        ("release", "ok false"),
        ("get", "ok true"),
    ] {
        assert!(
            outcomes.contains_key(&(function, outcome.to_owned())),
            "no {function} answered {outcome}"
        );
    }
    assert!(
        outcomes.keys().any(|(_, outcome)| outcome == "42501"),
        "another role's lock was tried"
    );
}
