#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{acquire, assert_each_raises, one, sqlstate_of};

    #[pg_test]
    fn release_all_releases_only_the_owners_locks() {
        acquire("'a', 'worker-1'");
        acquire("'b', 'worker-1'");
        acquire("'c', 'worker-2'");
        assert_eq!(one::<i64>("SELECT pglock_release_all('worker-1')"), 2);
        assert_eq!(one::<i64>("SELECT pglock_release_all('worker-1')"), 0);
        let left: String = one("SELECT string_agg(name, ',' ORDER BY name) FROM pglock_locks");
        assert_eq!(left, "c");
        assert_eq!(
            one::<i64>("SELECT pglock_release_all('worker-2', keep => true)"),
            1
        );
        assert!(one::<bool>(
            "SELECT released FROM pglock_locks WHERE name = 'c'"
        ));
    }

    #[pg_test]
    fn release_all_refuses_bad_owners_and_changes_nothing() {
        acquire("'a', 'worker-1'");
        let cases = [
            ("NULL", "22004"),
            ("''", "22023"),
            ("repeat('x', 256)", "22001"),
            ("'worker-1', NULL", "22004"),
        ];
        assert_each_raises(
            |arguments| format!("SELECT pglock_release_all({arguments})"),
            &cases,
        );
    }

    #[pg_test]
    fn the_view_shows_every_lock_without_its_data() {
        acquire("'a', 'worker-1', data => 'secret'");
        let row: String = one(
            "SELECT format('%s|%s|%s|%s|%s', name, owner, released, holder_role = current_user::regrole, data_bytes) \
               FROM pglock_locks",
        );
        assert_eq!(row, "a|worker-1|f|t|6");
    }

    #[pg_test]
    fn counters_count_once_preloaded() {
        // `cargo pgrx test` preloads pglock (src/lib.rs); tests/over_connections/tests/observer.rs
        // shows pglock_stats raising 55000 on a server that does not.
        assert!(one::<bool>("SELECT pglock_preloaded()"));
        let acquired = || one::<i64>("SELECT acquired FROM pglock_stats()");
        let before = acquired();
        acquire("'counted', 'worker-1'");
        assert_eq!(acquired(), before + 1);
        assert_eq!(sqlstate_of("SELECT * FROM pglock_stats()"), None);
    }
}
