//! Who may do what, over real logins: only pglock users call pglock, nobody writes
//! the table directly, and a role cannot heartbeat or release another role's lock.

use pglock_tests::{
    acquire, connect, connect_as, heartbeat, login_role, pglock_role, release, server_port,
    server_socket_dir, sqlstate, unique_name, SqlState,
};

/// A login role that is not a pglock user.
fn outsider() -> String {
    login_role("pglock_it_outsider", &[])
}

#[test]
fn a_role_cannot_release_or_heartbeat_another_roles_lock() {
    let (alice, bob) = (pglock_role("pglock_it_alice"), pglock_role("pglock_it_bob"));
    let name = unique_name("roles");
    let mut alice = connect_as(&alice);
    let mut bob = connect_as(&bob);
    let held = acquire(&mut alice, &name, "worker", 30.0, None).unwrap();

    // Bob knows the owner label and the RVN, and still cannot touch the lock.
    let attempt = heartbeat(&mut bob, &name, "worker", held.rvn);
    assert_eq!(sqlstate(attempt), SqlState::INSUFFICIENT_PRIVILEGE);
    let attempt = release(&mut bob, &name, "worker", held.rvn, false);
    assert_eq!(sqlstate(attempt), SqlState::INSUFFICIENT_PRIVILEGE);
    let still = acquire(&mut bob, &name, "bob", 30.0, None).unwrap();
    assert_eq!((still.acquired, still.rvn), (false, held.rvn));

    // Alice's own calls work.
    let rvn = heartbeat(&mut alice, &name, "worker", held.rvn).unwrap();
    assert!(release(&mut alice, &name, "worker", rvn, true).unwrap());
}

#[test]
fn taking_over_a_silent_lock_is_open_to_any_pglock_user_after_its_lease() {
    let name = unique_name("roles-takeover");
    let mut alice = connect_as(&pglock_role("pglock_it_alice"));
    let mut bob = connect_as(&pglock_role("pglock_it_bob"));
    let held = acquire(&mut alice, &name, "alice", 0.5, None).unwrap();
    // Across roles the lease runs by the server's clock too.
    let early = acquire(&mut bob, &name, "bob", 30.0, Some(held.rvn)).unwrap();
    assert!(!early.acquired);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let taken = acquire(&mut bob, &name, "bob", 30.0, Some(held.rvn)).unwrap();
    assert!(taken.acquired);
    // Now the lock is Bob's: Alice cannot release it with Bob's label and RVN.
    let attempt = release(&mut alice, &name, "bob", taken.rvn, false);
    assert_eq!(sqlstate(attempt), SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(release(&mut bob, &name, "bob", taken.rvn, false).unwrap());
}

#[test]
fn roles_without_pglock_user_cannot_call_pglock() {
    let mut outsider = connect_as(&outsider());
    let attempt = acquire(&mut outsider, &unique_name("outsider"), "o", 30.0, None);
    assert_eq!(sqlstate(attempt), SqlState::INSUFFICIENT_PRIVILEGE);
    let attempt = outsider.query("SELECT * FROM pglock_get('x')", &[]);
    assert_eq!(sqlstate(attempt), SqlState::INSUFFICIENT_PRIVILEGE);
}

#[test]
fn pglock_users_cannot_read_or_write_the_table_directly() {
    let mut alice = connect_as(&pglock_role("pglock_it_alice"));
    for statement in [
        "SELECT * FROM pglock.locks",
        "UPDATE pglock.locks SET owner = 'alice'",
        "DELETE FROM pglock.locks",
        "SELECT nextval('pglock.rvn_seq')",
        "CREATE TABLE pglock.mine (x int)",
    ] {
        let attempt = alice.batch_execute(statement);
        assert_eq!(
            sqlstate(attempt),
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{statement}"
        );
    }
}

#[test]
fn a_hostile_search_path_does_not_reach_pglocks_queries() {
    let role = pglock_role("pglock_it_eve");
    let mut super_client = connect();
    let db: String = super_client
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    super_client
        .batch_execute(&format!("GRANT CREATE ON DATABASE {db} TO {role}"))
        .unwrap();
    let mut eve = connect_as(&role);
    // An operator and functions that would run as the extension's owner if pglock's
    // statements resolved names through the caller's search_path.
    eve.batch_execute(
        "DROP SCHEMA IF EXISTS eve CASCADE;
         CREATE SCHEMA eve;
         CREATE TABLE eve.trap (fired_as text);
         CREATE FUNCTION eve.text_eq(text, text) RETURNS boolean LANGUAGE sql
             AS $$ INSERT INTO eve.trap VALUES (current_user) RETURNING true $$;
         CREATE OPERATOR eve.= (LEFTARG = text, RIGHTARG = text, FUNCTION = eve.text_eq);
         CREATE FUNCTION eve.nextval(regclass) RETURNS bigint LANGUAGE sql
             AS $$ INSERT INTO eve.trap VALUES (current_user) RETURNING 1::bigint $$;
         CREATE FUNCTION eve.now() RETURNS timestamptz LANGUAGE sql
             AS $$ INSERT INTO eve.trap VALUES (current_user) RETURNING now() $$;
         SET search_path = eve, pg_catalog, public;",
    )
    .unwrap();
    let name = unique_name("eve");
    let held = acquire(&mut eve, &name, "eve", 30.0, None).unwrap();
    let rvn = heartbeat(&mut eve, &name, "eve", held.rvn).unwrap();
    assert!(release(&mut eve, &name, "eve", rvn, false).unwrap());
    let fired: i64 = eve
        .query_one("SELECT count(*) FROM eve.trap", &[])
        .unwrap()
        .get(0);
    assert_eq!(fired, 0, "pglock ran a caller's operator or function");
}

#[test]
fn only_a_superuser_can_install_pglock() {
    // pglock.control says superuser = true, trusted = false: a database owner
    // who is not a superuser cannot create it.
    let mut admin = connect();
    login_role("db_owner", &[]);
    let database = format!("owned_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {database} OWNER db_owner"))
        .unwrap();
    let mut owner = postgres::Config::new()
        .host_path(server_socket_dir())
        .port(server_port())
        .user("db_owner")
        .dbname(&database)
        .connect(postgres::NoTls)
        .unwrap();
    let attempt = owner.batch_execute("CREATE EXTENSION pglock");
    assert_eq!(
        attempt.unwrap_err().code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    );
    drop(owner);
    admin
        .batch_execute(&format!("DROP DATABASE {database}"))
        .unwrap();
}
