//! Tests that run inside PostgreSQL (`#[pg_test]`), one file per concern.
//!
//! `cargo pgrx test` calls each test in the `tests` schema, inside a transaction it
//! rolls back, so tests cannot see each other's locks.  Errors are checked through
//! `tests.sqlstate_of`, which runs a statement in a subtransaction and returns the
//! SQLSTATE it raised, so a test can go on after an expected error.

mod acquire;
mod errors;
mod fence;
mod heartbeat;
mod heartbeat_many;
mod operators;
mod release;
mod roles;
mod rvn;
mod semaphore;

use pgrx::prelude::*;

pgrx::extension_sql!(
    r#"
CREATE SCHEMA IF NOT EXISTS tests;
GRANT USAGE ON SCHEMA tests TO PUBLIC;
CREATE FUNCTION tests.sqlstate_of(statement text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
-- The last RVN this session drew (NULL before its first): tests run side by
-- side, so the sequence's global position moves with the others' calls.
CREATE FUNCTION tests.rvn_drawn_here() RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN currval('pglock.rvn_seq')::text;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    RETURN 'none yet';
END
$$;
"#,
    name = "test_helpers",
);

/// The SQLSTATE `statement` raises, or `None` if it succeeds.
pub fn sqlstate_of(statement: &str) -> Option<String> {
    Spi::get_one_with_args::<String>("SELECT tests.sqlstate_of($1)", &[statement.into()])
        .expect("tests.sqlstate_of runs")
}

/// Each `(arguments, sqlstate)` case: `statement(arguments)` raises that SQLSTATE
/// and draws no RVN.
///
/// Comparing the table around these calls could not fail: `sqlstate_of` runs each
/// in a subtransaction whose rollback undoes any write.  The RVN sequence is not
/// rolled back, so an RVN drawn before the error shows here.  Whether a failed
/// call changed the table is checked from another session, where it cannot be
/// rolled back out of sight: `tests/over_connections/tests/transactions.rs`, and after every call of
/// `tests/over_connections/tests/fuzz.rs`.
pub fn assert_each_raises<A: AsRef<str>>(statement: impl Fn(&str) -> String, cases: &[(A, &str)]) {
    let before = rvn_sequence();
    for (arguments, expected) in cases {
        let statement = statement(arguments.as_ref());
        assert_eq!(
            sqlstate_of(&statement).as_deref(),
            Some(*expected),
            "{statement}"
        );
        assert_eq!(rvn_sequence(), before, "{statement} drew an RVN");
    }
}

/// The last RVN this session drew from the sequence, which a subtransaction's
/// rollback leaves as is (and which other tests, running side by side, do not move).
pub fn rvn_sequence() -> String {
    one("SELECT tests.rvn_drawn_here()")
}

/// Every row of `pglock.locks` as text, to show that a call that returned without
/// an error (a refused acquire, a release returning false) changed nothing.
pub fn table_contents() -> String {
    Spi::get_one::<String>(
        "SELECT coalesce(string_agg(format('%s', l), E'\n' ORDER BY name), '') FROM pglock.locks l",
    )
    .expect("pglock.locks is readable")
    .unwrap_or_default()
}

/// Run a query returning one value that must not be NULL.
pub fn one<T: FromDatum + IntoDatum>(query: &str) -> T {
    Spi::get_one::<T>(query)
        .expect("query runs")
        .expect("query returns a value")
}

/// `(acquired, rvn, owner)` of a `pglock_acquire(...)` call given as SQL arguments.
pub fn acquire(arguments: &str) -> (bool, i64, String) {
    let query = format!("SELECT acquired, rvn, owner FROM pglock_acquire({arguments})");
    let (acquired, rvn, owner) =
        Spi::get_three::<bool, i64, String>(&query).expect("pglock_acquire runs");
    (
        acquired.expect("acquired is set"),
        rvn.expect("rvn is set"),
        owner.expect("owner is set"),
    )
}
