#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{acquire, assert_each_raises, one, sqlstate_of, table_contents};

    #[pg_test]
    fn held_locks_are_renewed_and_rows_come_in_the_order_given() {
        let (_, c, _) = acquire("'c', 'w', '9 seconds', 'cp'");
        let (_, a, _) = acquire("'a', 'w'");
        let (_, b, _) = acquire("'b', 'w'");
        let rows: String = one(&format!(
            "SELECT string_agg(format('%s:%s', name, renewed), ',' ORDER BY n) \
               FROM pglock_heartbeat_many('w', ARRAY['c', 'a', 'b'], ARRAY[{c}, {a}, {b}]) \
                    WITH ORDINALITY AS h(name, rvn, renewed, n)"
        ));
        assert_eq!(rows, "c:t,a:t,b:t");
        // Separate statements: within one, the planner may read the lock before
        // renewing it.
        let current: i64 = one("SELECT rvn FROM pglock_get('a')");
        let renewed: i64 = one(&format!(
            "SELECT rvn FROM pglock_heartbeat_many('w', ARRAY['a'], ARRAY[{current}])"
        ));
        let stored: i64 = one("SELECT rvn FROM pglock_get('a')");
        assert_eq!(renewed, stored, "the row's RVN is the lock's new RVN");
        assert!(renewed > current, "a renewal draws a new RVN");
        let kept: String = one(
            "SELECT format('%s|%s|%s', lease, encode(data, 'escape'), rvn > 0) FROM pglock_get('c')",
        );
        assert_eq!(kept, "00:00:09|cp|t", "lease and data kept");
        let _ = (a, b);
    }

    #[pg_test]
    fn a_lease_given_replaces_each_renewed_locks_lease() {
        let (_, a, _) = acquire("'a', 'w', '5 seconds'");
        let (_, b, _) = acquire("'b', 'w', '7 seconds'");
        Spi::run(&format!(
            "SELECT count(*) FROM pglock_heartbeat_many('w', ARRAY['a', 'b'], ARRAY[{a}, {b}], \
                    lease => '1 minute')"
        ))
        .unwrap();
        let leases: String =
            one("SELECT string_agg(lease::text, ',' ORDER BY name) FROM pglock_locks");
        assert_eq!(leases, "00:01:00,00:01:00");
    }

    #[pg_test]
    fn locks_not_held_come_back_unrenewed_with_no_rvn_and_nothing_raised() {
        let (_, held, _) = acquire("'held', 'w'");
        let (_, moved, _) = acquire("'moved', 'w'");
        one::<i64>(&format!("SELECT pglock_heartbeat('moved', 'w', {moved})"));
        let (_, other, _) = acquire("'other-owner', 'x'");
        let before: String = Spi::get_one::<String>(
            "SELECT string_agg(format('%s', l), E'\\n' ORDER BY name) FROM pglock.locks l \
              WHERE name <> 'held'",
        )
        .unwrap()
        .unwrap();
        let rows: String = one(&format!(
            "SELECT string_agg(format('%s:%s:%s', name, rvn IS NULL, renewed), ',' ORDER BY n) \
               FROM pglock_heartbeat_many('w', \
                    ARRAY['moved', 'missing', 'held', 'other-owner'], \
                    ARRAY[{moved}, 5, {held}, {other}]) WITH ORDINALITY AS h(name, rvn, renewed, n)"
        ));
        assert_eq!(rows, "moved:t:f,missing:t:f,held:f:t,other-owner:t:f");
        let after: String = one(
            "SELECT string_agg(format('%s', l), E'\\n' ORDER BY name) FROM pglock.locks l \
              WHERE name <> 'held'",
        );
        assert_eq!(after, before, "locks not held are left alone");
    }

    #[pg_test]
    fn no_names_renew_nothing() {
        acquire("'a', 'w'");
        let before = table_contents();
        let rows: i64 =
            one("SELECT count(*) FROM pglock_heartbeat_many('w', '{}'::text[], '{}'::bigint[])");
        assert_eq!(rows, 0);
        assert_eq!(table_contents(), before);
    }

    #[pg_test]
    fn heartbeat_many_bad_arguments_raise_their_sqlstate_and_change_nothing() {
        let (_, rvn, _) = acquire("'a', 'w'");
        let long = "x".repeat(256);
        let cases = [
            (format!("NULL, ARRAY['a'], ARRAY[{rvn}]"), "22004"),
            (format!("'', ARRAY['a'], ARRAY[{rvn}]"), "22023"),
            (format!("'{long}', ARRAY['a'], ARRAY[{rvn}]"), "22001"),
            (format!("'w', NULL, ARRAY[{rvn}]"), "22004"),
            ("'w', ARRAY['a'], NULL".to_string(), "22004"),
            (format!("'w', ARRAY['a', NULL], ARRAY[{rvn}, 1]"), "22004"),
            (
                "'w', ARRAY['a', 'b'], ARRAY[NULL, 1]::bigint[]".to_string(),
                "22004",
            ),
            (format!("'w', ARRAY['a', 'b'], ARRAY[{rvn}]"), "22023"),
            (format!("'w', ARRAY['a'], ARRAY[{rvn}, 1]"), "22023"),
            (
                format!("'w', ARRAY['a', 'a'], ARRAY[{rvn}, {rvn}]"),
                "22023",
            ),
            (format!("'w', ARRAY['a', ''], ARRAY[{rvn}, 1]"), "22023"),
            (
                format!("'w', ARRAY['a', '{long}'], ARRAY[{rvn}, 1]"),
                "22001",
            ),
            (format!("'w', ARRAY['a', 'b'], ARRAY[{rvn}, 0]"), "22023"),
            (
                format!("'w', ARRAY['a'], ARRAY[{rvn}], lease => '0'"),
                "22023",
            ),
            (
                format!("'w', ARRAY['a'], ARRAY[{rvn}], lease => '2 days'"),
                "22023",
            ),
            (
                "'w', ARRAY(SELECT 'n' || g FROM generate_series(1, 10001) g), \
                 ARRAY(SELECT g::bigint FROM generate_series(1, 10001) g)"
                    .to_string(),
                "54000",
            ),
        ];
        assert_each_raises(
            |arguments| format!("SELECT * FROM pglock_heartbeat_many({arguments})"),
            &cases,
        );
    }

    #[pg_test]
    fn ten_thousand_names_are_accepted() {
        let renewed: i64 = one("SELECT count(*) FROM pglock_heartbeat_many('w', \
                    ARRAY(SELECT 'n' || g FROM generate_series(1, 10000) g), \
                    ARRAY(SELECT g::bigint FROM generate_series(1, 10000) g)) WHERE NOT renewed");
        assert_eq!(renewed, 10_000, "none held, none raised");
    }

    #[pg_test]
    fn heartbeat_many_in_a_read_only_transaction_gets_25006() {
        let (_, rvn, _) = acquire("'a', 'w'");
        Spi::run("SET LOCAL transaction_read_only = on").unwrap();
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT * FROM pglock_heartbeat_many('w', ARRAY['a'], ARRAY[{rvn}])"
            ))
            .as_deref(),
            Some("25006")
        );
    }
}
