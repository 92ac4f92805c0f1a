#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{acquire, assert_each_raises, one, sqlstate_of, table_contents};

    #[pg_test]
    fn a_release_deletes_the_lock() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        assert!(one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'worker-1', {rvn})"
        )));
        assert!(!one::<bool>(
            "SELECT EXISTS (SELECT FROM pglock_get('jobs'))"
        ));
    }

    #[pg_test]
    fn a_kept_release_keeps_or_replaces_the_data_under_a_new_rvn() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', data => 'cp-1'");
        assert!(one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'worker-1', {rvn}, true)"
        )));
        let row: String = one(&format!(
            "SELECT format('%s|%s|%s', released, rvn > {rvn}, encode(data, 'escape')) FROM pglock_get('jobs')"
        ));
        assert_eq!(row, "t|t|cp-1");

        let (_, rvn, _) = acquire("'jobs', 'worker-2'");
        assert!(one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'worker-2', {rvn}, keep => true, data => 'cp-2')"
        )));
        let data: String = one("SELECT encode(data, 'escape') FROM pglock_get('jobs')");
        assert_eq!(data, "cp-2");
    }

    #[pg_test]
    fn release_by_a_caller_that_does_not_hold_the_lock_gets_false() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        acquire("'kept', 'worker-1'");
        let kept: i64 = one("SELECT rvn FROM pglock_get('kept')");
        one::<bool>(&format!(
            "SELECT pglock_release('kept', 'worker-1', {kept}, keep => true)"
        ));
        let kept: i64 = one("SELECT rvn FROM pglock_get('kept')");
        let before = table_contents();
        let cases = [
            format!("'jobs', 'worker-1', {}", rvn + 1000),
            format!("'jobs', 'worker-2', {rvn}"),
            format!("'missing', 'worker-1', {rvn}"),
            format!("'kept', 'worker-1', {kept}"),
            format!("'kept', 'worker-1', {kept}, keep => true"),
        ];
        for arguments in cases {
            let released: bool = one(&format!("SELECT pglock_release({arguments})"));
            assert!(!released, "pglock_release({arguments})");
        }
        assert_eq!(table_contents(), before);
    }

    #[pg_test]
    fn release_bad_arguments_raise_their_sqlstate_and_change_nothing() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', data => 'cp'");
        let cases = [
            (format!("NULL, 'worker-1', {rvn}"), "22004"),
            (format!("'jobs', '', {rvn}"), "22023"),
            ("'jobs', 'worker-1', NULL".to_string(), "22004"),
            ("'jobs', 'worker-1', -7".to_string(), "22023"),
            (format!("'jobs', 'worker-1', {rvn}, keep => NULL"), "22004"),
            // Data would be lost with the deleted row.
            (format!("'jobs', 'worker-1', {rvn}, data => 'x'"), "22023"),
            (
                format!("'jobs', 'worker-1', {rvn}, true, pg_catalog.repeat('x', 1048577)::bytea"),
                "54000",
            ),
        ];
        assert_each_raises(
            |arguments| format!("SELECT pglock_release({arguments})"),
            &cases,
        );
    }

    #[pg_test]
    fn get_reads_without_acquiring_and_validates_its_name() {
        assert!(!one::<bool>(
            "SELECT EXISTS (SELECT FROM pglock_get('nothing'))"
        ));
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        let row: String =
            one("SELECT format('%s|%s|%s|%s', name, owner, rvn, released) FROM pglock_get('jobs')");
        assert_eq!(row, format!("jobs|worker-1|{rvn}|f"));
        assert_eq!(
            sqlstate_of("SELECT * FROM pglock_get(NULL)").as_deref(),
            Some("22004")
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM pglock_get('')").as_deref(),
            Some("22023")
        );
    }
}
