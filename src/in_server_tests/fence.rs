#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{
        acquire, assert_each_raises, one, rvn_sequence, sqlstate_of, table_contents,
    };

    #[pg_test]
    fn the_holders_fence_returns_its_rvn_and_writes_nothing() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', data => 'cp'");
        let (before, sequence) = (table_contents(), rvn_sequence());
        let fenced: i64 = one(&format!("SELECT pglock_fence('jobs', 'worker-1', {rvn})"));
        assert_eq!(fenced, rvn);
        assert_eq!(table_contents(), before, "no new RVN, data or lease");
        assert_eq!(rvn_sequence(), sequence, "no RVN drawn");
        // Fencing again in the same transaction is fine, and so is a heartbeat.
        one::<i64>(&format!("SELECT pglock_fence('jobs', 'worker-1', {rvn})"));
        let renewed: i64 = one(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {rvn})"
        ));
        assert!(renewed > rvn);
    }

    /// The fence holds the name's lock in share mode and a share lock on the
    /// holder's row, until the transaction ends.
    #[pg_test]
    fn a_fence_holds_the_name_shared_and_the_row_share_locked() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        Spi::run("SELECT pg_catalog.pg_current_xact_id()").unwrap();
        let row_locked_by_us =
            "SELECT xmax::text = (pg_catalog.pg_current_xact_id()::text::bigint \
                                 OPERATOR(pg_catalog.%) 4294967296)::text \
                                FROM pglock.locks WHERE name = 'jobs'";
        assert!(!one::<bool>(row_locked_by_us));
        one::<i64>(&format!("SELECT pglock_fence('jobs', 'worker-1', {rvn})"));
        let modes: String = one(
            "SELECT string_agg(mode, ',' ORDER BY mode) FROM pg_catalog.pg_locks \
              WHERE locktype = 'advisory' AND objsubid = 20556 \
                AND pid = pg_catalog.pg_backend_pid() AND granted",
        );
        assert_eq!(
            modes, "ExclusiveLock,ShareLock",
            "the acquire's exclusive lock and the fence's shared one"
        );
        assert!(one::<bool>(row_locked_by_us), "the row is share-locked");
    }

    #[pg_test]
    fn a_fence_by_a_caller_that_does_not_hold_the_lock_gets_55000() {
        let (_, first, _) = acquire("'jobs', 'worker-1'");
        let current: i64 = one(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {first})"
        ));
        acquire("'kept', 'worker-1'");
        let kept: i64 = one("SELECT rvn FROM pglock_get('kept')");
        one::<bool>(&format!(
            "SELECT pglock_release('kept', 'worker-1', {kept}, keep => true)"
        ));
        let kept: i64 = one("SELECT rvn FROM pglock_get('kept')");
        let cases = [
            (format!("'jobs', 'worker-1', {first}"), "55000"), // taken over, or stale
            (format!("'jobs', 'worker-2', {current}"), "55000"), // another owner
            (format!("'missing', 'worker-1', {current}"), "55000"),
            (format!("'kept', 'worker-1', {kept}"), "55000"), // released
        ];
        assert_each_raises(
            |arguments| format!("SELECT pglock_fence({arguments})"),
            &cases,
        );
    }

    #[pg_test(error = "pglock: lock \"jobs\" is not held by \"worker-1\"")]
    fn a_failed_fence_says_what_a_failed_heartbeat_says() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        one::<i64>(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {rvn})"
        ));
        Spi::run(&format!("SELECT pglock_fence('jobs', 'worker-1', {rvn})")).unwrap();
    }

    #[pg_test]
    fn fence_bad_arguments_raise_their_sqlstate_and_change_nothing() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        let long = "x".repeat(256);
        let cases = [
            (format!("NULL, 'worker-1', {rvn}"), "22004"),
            (format!("'', 'worker-1', {rvn}"), "22023"),
            (format!("'{long}', 'worker-1', {rvn}"), "22001"),
            (format!("'jobs', NULL, {rvn}"), "22004"),
            (format!("'jobs', '', {rvn}"), "22023"),
            (format!("'jobs', '{long}', {rvn}"), "22001"),
            ("'jobs', 'worker-1', NULL".to_string(), "22004"),
            ("'jobs', 'worker-1', 0".to_string(), "22023"),
            ("'jobs', 'worker-1', -3".to_string(), "22023"),
        ];
        assert_each_raises(
            |arguments| format!("SELECT pglock_fence({arguments})"),
            &cases,
        );
    }

    /// A read-only transaction has no writes to fence, and on a hot standby a
    /// fence could not hold off the primary's writers: 25006 at once.
    #[pg_test]
    fn a_fence_in_a_read_only_transaction_gets_25006() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        Spi::run("SET LOCAL transaction_read_only = on").unwrap();
        assert_eq!(
            sqlstate_of(&format!("SELECT pglock_fence('jobs', 'worker-1', {rvn})")).as_deref(),
            Some("25006")
        );
    }
}
