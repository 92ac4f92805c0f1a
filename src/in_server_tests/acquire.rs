#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{acquire, assert_each_raises, one, table_contents};

    #[pg_test]
    fn a_free_name_is_acquired_with_the_callers_values() {
        let row = Spi::get_two::<bool, String>(
            "SELECT acquired, format('%s|%s|%s', owner, lease, encode(data, 'escape')) \
               FROM pglock_acquire('jobs', 'worker-1', '5 seconds', 'cp-0')",
        )
        .unwrap();
        assert_eq!(row, (Some(true), Some("worker-1|00:00:05|cp-0".into())));
        let stored: String =
            one("SELECT format('%s|%s|%s', owner, lease, released) FROM pglock_get('jobs')");
        assert_eq!(stored, "worker-1|00:00:05|f");
    }

    #[pg_test]
    fn the_default_lease_is_twenty_seconds() {
        let lease: String = one("SELECT lease::text FROM pglock_acquire('jobs', 'worker-1')");
        assert_eq!(lease, "00:00:20");
    }

    #[pg_test]
    fn a_held_lock_is_refused_and_shows_its_holder() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', '7 seconds', 'mine'");
        let before = table_contents();
        let refused: String = one(
            "SELECT format('%s|%s|%s|%s|%s', acquired, rvn, owner, lease, encode(data, 'escape')) \
               FROM pglock_acquire('jobs', 'worker-2', '1 second', 'theirs')",
        );
        assert_eq!(refused, format!("f|{rvn}|worker-1|00:00:07|mine"));
        assert_eq!(table_contents(), before, "a refused acquire writes nothing");
    }

    #[pg_test]
    fn the_holder_itself_is_refused_too() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        assert_eq!(
            acquire("'jobs', 'worker-1'"),
            (false, rvn, "worker-1".into())
        );
    }

    #[pg_test]
    fn an_rvn_that_stood_still_is_taken_over() {
        let (_, seen, _) = acquire("'jobs', 'worker-1', data => 'checkpoint'");
        let (acquired, rvn, owner) =
            acquire(&format!("'jobs', 'worker-2', observed_rvn => {seen}"));
        assert!(acquired);
        assert!(rvn > seen, "a takeover writes a newer RVN");
        assert_eq!(owner, "worker-2");
        let data: String = one("SELECT encode(data, 'escape') FROM pglock_get('jobs')");
        assert_eq!(
            data, "checkpoint",
            "data survives a takeover unless replaced"
        );
    }

    #[pg_test]
    fn an_rvn_that_moved_is_not_taken_over() {
        let (_, seen, _) = acquire("'jobs', 'worker-1'");
        let renewed: i64 = one(&format!(
            "SELECT pglock_heartbeat('jobs', 'worker-1', {seen})"
        ));
        let attempt = acquire(&format!("'jobs', 'worker-2', observed_rvn => {seen}"));
        assert_eq!(attempt, (false, renewed, "worker-1".into()));
    }

    #[pg_test]
    fn a_released_lock_is_taken_at_once_and_keeps_its_data() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1'");
        assert!(one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'worker-1', {rvn}, keep => true, data => 'step 3')"
        )));
        let row: String = one(
            "SELECT format('%s|%s|%s', acquired, owner, encode(data, 'escape')) \
               FROM pglock_acquire('jobs', 'worker-2')",
        );
        assert_eq!(row, "t|worker-2|step 3");
    }

    #[pg_test]
    fn data_given_replaces_and_replace_data_clears() {
        let (_, rvn, _) = acquire("'jobs', 'worker-1', data => 'old'");
        one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'worker-1', {rvn}, keep => true)"
        ));
        let replaced: String =
            one("SELECT encode(data, 'escape') FROM pglock_acquire('jobs', 'w2', data => 'new')");
        assert_eq!(replaced, "new");
        let rvn: i64 = one("SELECT rvn FROM pglock_get('jobs')");
        one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'w2', {rvn}, keep => true)"
        ));
        let cleared: bool =
            one("SELECT data IS NULL FROM pglock_acquire('jobs', 'w3', replace_data => true)");
        assert!(cleared);
    }

    #[pg_test]
    fn names_are_any_string_up_to_255_characters() {
        for name in [
            "x",
            "with space",
            "quote'and\"double",
            "日本語",
            "a;DROP TABLE x;--",
        ] {
            let sql = format!("SELECT acquired FROM pglock_acquire({}, 'o')", quote(name));
            assert!(one::<bool>(&sql), "name {name:?} is acquired");
        }
        let longest = format!("'{}'", "é".repeat(255));
        assert!(acquire(&format!("{longest}, 'o'")).0);
    }

    #[pg_test]
    fn acquire_bad_arguments_raise_their_sqlstate_and_change_nothing() {
        acquire("'jobs', 'worker-1', data => 'kept'");
        let long = "x".repeat(256);
        let cases = [
            ("NULL, 'o'", "22004"),
            ("'', 'o'", "22023"),
            (&format!("'{long}', 'o'"), "22001"),
            ("'n', NULL", "22004"),
            ("'n', ''", "22023"),
            (&format!("'n', '{long}'"), "22001"),
            ("'n', 'o', NULL", "22004"),
            ("'n', 'o', '0 seconds'", "22023"),
            ("'n', 'o', '-5 seconds'", "22023"),
            ("'n', 'o', '1 day 1 second'", "22023"),
            ("'n', 'o', '1 mon'", "22023"),
            (
                "'n', 'o', data => pg_catalog.repeat('x', 1048577)::bytea",
                "54000",
            ),
            ("'n', 'o', replace_data => NULL", "22004"),
            ("'n', 'o', observed_rvn => 0", "22023"),
            ("'n', 'o', observed_rvn => -1", "22023"),
            (
                "'jobs', 'worker-2', data => pg_catalog.repeat('x', 1048577)::bytea",
                "54000",
            ),
        ];
        assert_each_raises(
            |arguments| format!("SELECT * FROM pglock_acquire({arguments})"),
            &cases,
        );
    }

    #[pg_test]
    fn data_of_exactly_one_mebibyte_is_accepted() {
        let bytes: i32 = one("SELECT length(data) FROM pglock_acquire('big', 'o', \
                    data => pg_catalog.repeat('x', 1048576)::bytea)");
        assert_eq!(bytes, 1_048_576);
    }

    fn quote(text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }
}
