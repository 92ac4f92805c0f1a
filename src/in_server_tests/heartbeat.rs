#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{acquire, assert_each_raises, one};

    #[pg_test]
    fn a_heartbeat_gives_a_newer_rvn_and_keeps_the_rest() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', '9 seconds', 'cp'");
        let renewed: i64 = one(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {rvn})"
        ));
        assert!(renewed > rvn);
        let row: String = one(
            "SELECT format('%s|%s|%s|%s', rvn, owner, lease, encode(data, 'escape')) \
               FROM pglock_get('jobs')",
        );
        assert_eq!(row, format!("{renewed}|worker-1|00:00:09|cp"));
    }

    #[pg_test]
    fn a_heartbeat_may_replace_data_and_lease() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', data => 'cp'");
        let rvn: i64 = one(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {rvn}, 'step 2', lease => '3 seconds')"
        ));
        let row: String =
            one("SELECT format('%s|%s', lease, encode(data, 'escape')) FROM pglock_get('jobs')");
        assert_eq!(row, "00:00:03|step 2");
        one::<i64>(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {rvn}, replace_data => true)"
        ));
        assert!(one::<bool>("SELECT data IS NULL FROM pglock_get('jobs')"));
    }

    #[pg_test]
    fn heartbeat_by_a_caller_that_does_not_hold_the_lock_gets_55000() {
        let (_, first, _) = acquire("'jobs', 'worker-1'");
        let current: i64 = one(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {first})"
        ));
        acquire("'kept', 'worker-1'");
        let kept_rvn: i64 = one("SELECT rvn FROM pglock_get('kept')");
        one::<bool>(&format!(
            "SELECT pglock_release('kept', 'worker-1', {kept_rvn}, keep => true)"
        ));
        let kept_rvn: i64 = one("SELECT rvn FROM pglock_get('kept')");
        let cases = [
            (format!("'jobs', 'worker-1', {first}"), "55000"), // not the latest RVN
            (format!("'jobs', 'worker-2', {current}"), "55000"), // another owner
            (format!("'missing', 'worker-1', {current}"), "55000"),
            (format!("'kept', 'worker-1', {kept_rvn}"), "55000"), // released
        ];
        assert_each_raises(
            |arguments| format!("SELECT pglock_heartbeat({arguments})"),
            &cases,
        );
    }

    #[pg_test(error = "pglock: lock \"jobs\" is not held by \"worker-2\"")]
    fn the_error_names_the_lock_and_the_caller() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        Spi::run(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-2', {rvn})"
        ))
        .unwrap();
    }

    #[pg_test]
    fn heartbeat_bad_arguments_raise_their_sqlstate_and_change_nothing() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        let cases = [
            (format!("NULL, 'worker-1', {rvn}"), "22004"),
            (format!("'', 'worker-1', {rvn}"), "22023"),
            (format!("'jobs', NULL, {rvn}"), "22004"),
            ("'jobs', 'worker-1', NULL".to_string(), "22004"),
            ("'jobs', 'worker-1', 0".to_string(), "22023"),
            (
                format!("'jobs', 'worker-1', {rvn}, replace_data => NULL"),
                "22004",
            ),
            (
                format!("'jobs', 'worker-1', {rvn}, lease => '0 seconds'"),
                "22023",
            ),
            (
                format!("'jobs', 'worker-1', {rvn}, lease => '-1 hour'"),
                "22023",
            ),
            (
                format!("'jobs', 'worker-1', {rvn}, pg_catalog.repeat('x', 1048577)::bytea"),
                "54000",
            ),
        ];
        assert_each_raises(
            |arguments| format!("SELECT pglock_heartbeat({arguments})"),
            &cases,
        );
    }
}
