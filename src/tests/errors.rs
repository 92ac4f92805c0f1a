#[pgrx::pg_schema]
mod tests {
    use pgrx::pg_sys::panic::ErrorReport;
    use pgrx::prelude::*;

    use crate::error::PglockError;

    #[allow(clippy::result_large_err)]
    fn failing_call() -> Result<(), ErrorReport> {
        Err(PglockError::DataTooLarge { bytes: 7 })?;
        Ok(())
    }

    /// An error's LOCATION is the `?` that raised it, not the error module.
    #[pg_test]
    fn errors_are_located_at_the_question_mark_that_raises_them() {
        let report = failing_call().unwrap_err().to_string();
        let raised_at = format!("LOCATION: tests/errors, {}:{}:", file!(), line!() - 8);
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
            Some("pglock: the function's row type has 6 columns, not 5")
        );
    }
}
