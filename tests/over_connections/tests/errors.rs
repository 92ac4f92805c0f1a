//! What a client reads of pglock's errors: the SQLSTATE, message, DETAIL and
//! HINT, and where in pglock the error arose (the `?` in the function's body
//! that met it), whichever way the function is called into (a generated
//! wrapper, or one of the C entry points that return a lock's row).

use pglock_tests::{connect, pglock_role, unique_name, Client};
use postgres::error::DbError;

/// The error `statement` raises, as the client reads it.
fn error_of(client: &mut Client, statement: &str) -> DbError {
    let error = client
        .batch_execute(statement)
        .expect_err(&format!("{statement} raises"));
    error
        .as_db_error()
        .unwrap_or_else(|| panic!("{statement}: not an error of the server: {error}"))
        .clone()
}

#[test]
fn an_error_says_where_in_pglock_it_arose() {
    let mut client = connect();
    // (statement, SQLSTATE, the module of the function's body)
    let cases = [
        // C entry points: their bodies are in functions/lease, wait, watch.
        (
            "SELECT * FROM pglock_acquire('', 'o')",
            "22023",
            "functions/lease",
        ),
        (
            "SELECT * FROM pglock_acquire_wait('x', 'o', wait_timeout => '-1 s')",
            "22023",
            "functions/wait",
        ),
        ("SELECT * FROM pglock_get(NULL)", "22004", "functions/lease"),
        (
            "SELECT * FROM pglock_watch('', 1)",
            "22023",
            "functions/watch",
        ),
        // Generated wrappers.
        (
            "SELECT pglock_heartbeat('no such lock', 'o', 1)",
            "55000",
            "functions/lease",
        ),
        (
            "SELECT pglock_fence('no such lock', 'o', 1)",
            "55000",
            "functions/fence",
        ),
        (
            "SELECT * FROM pglock_acquire_slot('s', 'o', 0)",
            "22023",
            "functions/semaphore",
        ),
    ];
    for (statement, sqlstate, module) in cases {
        let error = error_of(&mut client, statement);
        assert_eq!(error.code().code(), sqlstate, "{statement}: {error}");
        assert_eq!(error.routine(), Some(module), "{statement}: {error:?}");
        // The server keeps a file's base name; the line starts an expression
        // with a `?` (rustc locates a `?` where its expression starts).
        let base = format!("{}.rs", module.rsplit('/').next().unwrap());
        assert_eq!(error.file(), Some(base.as_str()), "{statement}: {error:?}");
        let source = std::fs::read_to_string(format!(
            "{}/../../src/{module}.rs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("read the function's source");
        let line = error.line().expect("a line") as usize;
        let statement_text: String = source
            .lines()
            .skip(line - 1)
            .scan(false, |ended, text| {
                let this = (!*ended).then(|| text.to_owned());
                *ended = text.trim_end().ends_with(';');
                this
            })
            .collect();
        assert!(
            statement_text.contains(")?"),
            "{statement}: line {line} of src/{module}.rs starts no `?`: {statement_text:?}"
        );
    }
}

#[test]
fn a_lost_lock_says_who_holds_it_and_what_to_do() {
    let role = pglock_role("errors_holder");
    let mut holder = pglock_tests::connect_as(&role);
    let name = unique_name("errors");
    let row = holder
        .query_one(
            "SELECT rvn FROM pglock_acquire($1, 'a', '1 hour')",
            &[&name],
        )
        .unwrap();
    let rvn: i64 = row.get(0);
    let error = error_of(
        &mut holder,
        &format!("SELECT pglock_heartbeat('{name}', 'b', {rvn})"),
    );
    assert_eq!(error.code().code(), "55000");
    assert_eq!(
        error.message(),
        format!("pglock: lock \"{name}\" is not held by \"b\"")
    );
    assert_eq!(error.detail(), Some("The lock is held by owner \"a\"."));
    assert_eq!(
        error.hint(),
        Some("Stop the work this lock protects; acquire the lock again to continue.")
    );
}
