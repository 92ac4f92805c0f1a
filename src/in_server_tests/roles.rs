#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::in_server_tests::{one, rvn_sequence, sqlstate_of};

    fn create_roles() {
        Spi::run(
            "CREATE ROLE pglock_test_alice; CREATE ROLE pglock_test_bob; \
             CREATE ROLE pglock_test_mallory; \
             GRANT pglock_user TO pglock_test_alice, pglock_test_bob",
        )
        .unwrap();
    }

    #[pg_test]
    fn another_role_cannot_heartbeat_or_release_even_with_owner_and_rvn() {
        create_roles();
        Spi::run("SET ROLE pglock_test_alice").unwrap();
        let rvn: i64 = one("SELECT rvn FROM pglock_acquire('jobs', 'shared-label')");
        Spi::run("RESET ROLE; SET ROLE pglock_test_bob").unwrap();
        // Comparing the table here could not fail (each refusal rolls back its
        // subtransaction); the RVN sequence, which is not rolled back, can.
        let before = rvn_sequence_as_owner();
        for statement in [
            format!("SELECT pglock_heartbeat('jobs', 'shared-label', {rvn})"),
            format!("SELECT pglock_release('jobs', 'shared-label', {rvn})"),
            format!("SELECT pglock_release('jobs', 'shared-label', {rvn}, keep => true)"),
        ] {
            assert_eq!(
                sqlstate_of(&statement).as_deref(),
                Some("42501"),
                "{statement}"
            );
        }
        assert_eq!(rvn_sequence_as_owner(), before, "a refusal drew an RVN");
        // Knowing the RVN is not enough to take another role's lock over: the
        // server must have seen its 20 s lease run out.
        let taken: bool = one(&format!(
            "SELECT acquired FROM pglock_acquire('jobs', 'bob', observed_rvn => {rvn})"
        ));
        assert!(!taken);
        assert_eq!(rvn_sequence_as_owner(), before, "a refusal drew an RVN");
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn another_roles_lock_is_taken_over_once_the_server_saw_its_lease_run_out() {
        create_roles();
        Spi::run("SET ROLE pglock_test_alice").unwrap();
        one::<i64>("SELECT rvn FROM pglock_acquire('jobs', 'a', '50 ms', 'alice''s')");
        Spi::run("RESET ROLE; SET ROLE pglock_test_bob").unwrap();
        Spi::run("SELECT pg_sleep(0.1)").unwrap();
        // No RVN needed: the server watched it stand still for its lease.
        let (taken, data) =
            Spi::get_two::<bool, Vec<u8>>("SELECT acquired, data FROM pglock_acquire('jobs', 'b')")
                .unwrap();
        assert_eq!(taken, Some(true));
        assert_eq!(data, None, "another role's data is not inherited");
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn the_holding_role_releases_its_own_lock() {
        create_roles();
        Spi::run("SET ROLE pglock_test_alice").unwrap();
        let rvn: i64 = one("SELECT rvn FROM pglock_acquire('jobs', 'a')");
        let rvn: i64 = one(&format!("SELECT pglock_heartbeat('jobs', 'a', {rvn})"));
        assert!(one::<bool>(&format!(
            "SELECT pglock_release('jobs', 'a', {rvn})"
        )));
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn only_pglock_users_may_call_and_nobody_touches_the_table() {
        create_roles();
        Spi::run("SET ROLE pglock_test_mallory").unwrap();
        for statement in [
            "SELECT * FROM pglock_acquire('jobs', 'm')",
            "SELECT * FROM pglock_get('jobs')",
            "SELECT pglock_heartbeat('jobs', 'm', 1)",
            "SELECT pglock_release('jobs', 'm', 1)",
        ] {
            assert_eq!(
                sqlstate_of(statement).as_deref(),
                Some("42501"),
                "{statement}"
            );
        }
        Spi::run("RESET ROLE; SET ROLE pglock_test_alice").unwrap();
        for statement in [
            "SELECT * FROM pglock.locks",
            "INSERT INTO pglock.locks VALUES ('x', 'o', 1, '1 s', NULL, false, 10)",
            "UPDATE pglock.locks SET owner = 'me'",
            "DELETE FROM pglock.locks",
            "SELECT nextval('pglock.rvn_seq')",
        ] {
            assert_eq!(
                sqlstate_of(statement).as_deref(),
                Some("42501"),
                "{statement}"
            );
        }
        Spi::run("RESET ROLE").unwrap();
    }

    fn rvn_sequence_as_owner() -> String {
        Spi::run("RESET ROLE").unwrap();
        let position = rvn_sequence();
        Spi::run("SET ROLE pglock_test_bob").unwrap();
        position
    }
}
