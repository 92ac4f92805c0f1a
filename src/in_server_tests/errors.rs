#[pgrx::pg_schema]
mod tests {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;

    use pglock_protocol::ArgumentError;

    use crate::error::PglockError;

    /// A call whose `?` raises, and the line of that `?`.
    #[allow(clippy::result_large_err)]
    #[rustfmt::skip]
    fn failing_call() -> (u32, Result<(), ErrorReport>) {
        let too_large = PglockError::Argument(ArgumentError::DataTooLarge { bytes: 7 });
        let raise = || -> Result<(), ErrorReport> { Err(too_large)?; Ok(()) }; let line = line!();
        (line, raise())
    }

    /// An error's LOCATION is the `?` that raised it, not the error module.
    #[pg_test]
    fn errors_are_located_at_the_question_mark_that_raises_them() {
        let (line, raised) = failing_call();
        let report = raised.unwrap_err().to_string();
        let raised_at = format!("LOCATION: in_server_tests/errors, {}:{line}:", file!());
        assert!(report.contains(&raised_at), "{report}");
        assert!(report.contains("pglock: data is 7 bytes; the limit is 1048576 bytes"));
    }

    /// The C entry points fill exactly the columns of pglock's row types: one
    /// declared with a wider type raises instead of reading past its values.
    #[pg_test]
    fn a_row_type_of_another_width_is_refused() {
        Spi::run(
            "CREATE TYPE tests.wide AS (acquired boolean, rvn bigint, owner text, \
                 lease interval, data bytea, extra integer); \
             CREATE FUNCTION tests.wide_acquire(name text, owner text, \
                 lease interval DEFAULT '20 seconds', data bytea DEFAULT NULL, \
                 replace_data boolean DEFAULT false, observed_rvn bigint DEFAULT NULL) \
             RETURNS SETOF tests.wide LANGUAGE c \
             AS '$libdir/pglock', 'pglock_acquire_wrapper'; \
             CREATE FUNCTION tests.message_of(statement text) RETURNS text \
             LANGUAGE plpgsql AS $$ \
             BEGIN EXECUTE statement; RETURN NULL; \
             EXCEPTION WHEN OTHERS THEN RETURN SQLERRM; END $$",
        )
        .unwrap();
        let message = Spi::get_one::<String>(
            "SELECT tests.message_of('SELECT * FROM tests.wide_acquire(''wide'', ''o'')')",
        )
        .unwrap();
        assert_eq!(
            message.as_deref(),
            Some(
                "pglock: the function's row has columns [\"acquired\", \"rvn\", \"owner\", \
                 \"lease\", \"data\", \"extra\"], not [\"acquired\", \"rvn\", \"owner\", \
                 \"lease\", \"data\"]"
            )
        );
    }

    /// Rows are filled by name: a row type of the right width whose columns
    /// are named otherwise (here `holder` where `owner` belongs) is refused.
    #[pg_test]
    fn a_row_type_with_other_column_names_is_refused() {
        Spi::run(
            "CREATE TYPE tests.renamed AS (acquired boolean, rvn bigint, holder text, \
                 lease interval, data bytea); \
             CREATE FUNCTION tests.renamed_acquire(name text, owner text, \
                 lease interval DEFAULT '20 seconds', data bytea DEFAULT NULL, \
                 replace_data boolean DEFAULT false, observed_rvn bigint DEFAULT NULL) \
             RETURNS SETOF tests.renamed LANGUAGE c \
             AS '$libdir/pglock', 'pglock_acquire_wrapper'",
        )
        .unwrap();
        let message = message_of("SELECT * FROM tests.renamed_acquire('renamed', 'o')");
        assert!(
            message.contains("row has columns") && message.contains("\"holder\""),
            "{message}"
        );
    }

    /// Arguments are read by position, checked by name: a declaration that
    /// swaps two arguments of one type (name and owner) is refused.
    #[pg_test]
    fn a_declaration_with_swapped_arguments_is_refused() {
        Spi::run(
            "CREATE FUNCTION tests.swapped_acquire(owner text, name text, \
                 lease interval DEFAULT '20 seconds', data bytea DEFAULT NULL, \
                 replace_data boolean DEFAULT false, observed_rvn bigint DEFAULT NULL) \
             RETURNS SETOF pglock_acquire_result LANGUAGE c \
             AS '$libdir/pglock', 'pglock_acquire_wrapper'",
        )
        .unwrap();
        let message = message_of("SELECT * FROM tests.swapped_acquire('o', 'swapped')");
        assert!(
            message.starts_with("pglock: the function's arguments are [\"owner\", \"name\""),
            "{message}"
        );
        assert!(
            Spi::get_one::<bool>("SELECT NOT EXISTS (SELECT FROM pglock_get('swapped'))")
                .unwrap()
                .unwrap(),
            "nothing was written"
        );
    }

    /// The hot path reads the table column by column: a table whose columns
    /// differ in anything (here a NOT NULL dropped, or a type that is not
    /// regrole) is refused, checked as the locks table is when first found.
    #[pg_test]
    fn a_table_with_other_columns_is_not_the_locks_table() {
        Spi::run(
            "CREATE TABLE tests.same (LIKE pglock.locks); \
             CREATE TABLE tests.nullable (LIKE pglock.locks); \
             ALTER TABLE tests.nullable ALTER COLUMN owner DROP NOT NULL; \
             CREATE TABLE tests.retyped (LIKE pglock.locks); \
             ALTER TABLE tests.retyped ALTER COLUMN holder_role TYPE oid",
        )
        .unwrap();
        let checked = |table: &str| {
            let relation = pgrx::PgRelation::open_with_name_and_share_lock(table).unwrap();
            let checked = crate::locks_table::check_columns(&relation.tuple_desc());
            checked
        };
        assert_eq!(checked("tests.same"), Ok(()));
        for table in ["tests.nullable", "tests.retyped"] {
            let difference = checked(table).unwrap_err();
            assert!(
                difference.starts_with("has columns"),
                "{table}: {difference}"
            );
        }
    }

    /// What `statement` raised (its message), or "" if it raised nothing.
    fn message_of(statement: &str) -> String {
        Spi::run(
            "CREATE OR REPLACE FUNCTION tests.raised_by(statement text) RETURNS text \
             LANGUAGE plpgsql AS $$ \
             BEGIN EXECUTE statement; RETURN ''; \
             EXCEPTION WHEN OTHERS THEN RETURN SQLERRM; END $$",
        )
        .unwrap();
        Spi::get_one_with_args::<String>("SELECT tests.raised_by($1)", &[statement.into()])
            .unwrap()
            .unwrap_or_default()
    }
}
