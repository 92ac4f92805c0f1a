#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{assert_each_raises, one, sqlstate_of, table_contents};

    // Each test has a semaphore of its own: tests run side by side, and a slot
    // that another test's open transaction is writing is skipped, not waited for.

    fn slot(arguments: &str) -> String {
        one(&format!(
            "SELECT format('%s|%s|%s', acquired, slot_name, rvn IS NOT NULL) \
               FROM pglock_acquire_slot({arguments})"
        ))
    }

    #[pg_test]
    fn slots_fill_from_the_first_and_a_full_semaphore_refuses_with_nulls() {
        assert_eq!(slot("'fill', 'a', 3"), "t|fill#1|t");
        assert_eq!(slot("'fill', 'b', 3"), "t|fill#2|t");
        assert_eq!(slot("'fill', 'c', 3, '5 seconds', 'mine'"), "t|fill#3|t");
        let before = table_contents();
        assert_eq!(slot("'fill', 'd', 3"), "f||f");
        assert_eq!(table_contents(), before, "a refusal writes nothing");
        let stored: String = one(
            "SELECT format('%s|%s|%s', owner, lease, encode(data, 'escape')) \
               FROM pglock_get('fill#3')",
        );
        assert_eq!(stored, "c|00:00:05|mine");
    }

    /// A slot is an ordinary lock: heartbeat, fence, get, the view and release
    /// work on it by its name, and a released slot is free again.
    #[pg_test]
    fn a_slot_is_an_ordinary_lock() {
        let rvn: i64 = one("SELECT rvn FROM pglock_acquire_slot('ordinary', 'a', 1)");
        let rvn: i64 = one(&format!(
            "SELECT pglock_heartbeat('ordinary#1', 'a', {rvn})"
        ));
        assert_eq!(
            one::<i64>(&format!("SELECT pglock_fence('ordinary#1', 'a', {rvn})")),
            rvn
        );
        assert_eq!(
            one::<String>("SELECT owner FROM pglock_locks WHERE name = 'ordinary#1'"),
            "a"
        );
        assert_eq!(slot("'ordinary', 'b', 1"), "f||f");
        assert!(one::<bool>(&format!(
            "SELECT pglock_release('ordinary#1', 'a', {rvn})"
        )));
        assert_eq!(slot("'ordinary', 'b', 1"), "t|ordinary#1|t");
    }

    #[pg_test]
    fn waiting_takes_over_a_slot_whose_holder_went_silent_after_its_lease() {
        slot("'silent', 'silent', 1, '50 milliseconds'");
        let started: f64 = one("SELECT extract(epoch FROM clock_timestamp())::float8");
        assert_eq!(
            slot("'silent', 'waiter', 1, wait_timeout => '10 seconds'"),
            "t|silent#1|t"
        );
        let waited: f64 =
            one::<f64>("SELECT extract(epoch FROM clock_timestamp())::float8") - started;
        assert!(
            waited >= 0.05,
            "taken over after {waited} s, before the lease"
        );
        assert_eq!(
            one::<String>("SELECT owner FROM pglock_get('silent#1')"),
            "waiter"
        );
    }

    #[pg_test]
    fn acquire_slot_bad_arguments_raise_their_sqlstate_and_change_nothing() {
        slot("'bad', 'a', 1");
        let long = "x".repeat(256);
        let semaphore_too_long = "x".repeat(251);
        let cases = [
            ("NULL, 'o', 3".to_string(), "22004"),
            ("'', 'o', 3".to_string(), "22023"),
            (format!("'{semaphore_too_long}', 'o', 3"), "22001"),
            (format!("'{long}', 'o', 3"), "22001"),
            ("'s', NULL, 3".to_string(), "22004"),
            ("'s', '', 3".to_string(), "22023"),
            (format!("'s', '{long}', 3"), "22001"),
            ("'s', 'o', NULL".to_string(), "22004"),
            ("'s', 'o', 0".to_string(), "22023"),
            ("'s', 'o', -1".to_string(), "22023"),
            ("'s', 'o', 1001".to_string(), "22023"),
            ("'s', 'o', 3, NULL".to_string(), "22004"),
            ("'s', 'o', 3, '0'".to_string(), "22023"),
            ("'s', 'o', 3, '1 day 1 second'".to_string(), "22023"),
            (
                "'s', 'o', 3, data => pg_catalog.repeat('x', 1048577)::bytea".to_string(),
                "54000",
            ),
            (
                "'s', 'o', 3, wait_timeout => '-1 second'".to_string(),
                "22023",
            ),
            (
                "'bad', 'b', 1, wait_timeout => '-1 second'".to_string(),
                "22023",
            ),
        ];
        assert_each_raises(
            |arguments| format!("SELECT * FROM pglock_acquire_slot({arguments})"),
            &cases,
        );
    }

    #[pg_test]
    fn the_longest_semaphore_name_and_the_largest_count_are_accepted() {
        let name = "é".repeat(250);
        assert_eq!(
            slot(&format!("'{name}', 'o', 1000")),
            format!("t|{name}#1|t")
        );
    }

    /// (REPEATABLE READ, 25000, is in tests/regress: a test's transaction has
    /// run queries before it could set its isolation level.)
    #[pg_test]
    fn acquire_slot_in_a_read_only_transaction_gets_25006() {
        Spi::run("SET LOCAL transaction_read_only = on").unwrap();
        assert_eq!(
            sqlstate_of("SELECT * FROM pglock_acquire_slot('read-only', 'o', 1)").as_deref(),
            Some("25006")
        );
    }
}
