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
}
