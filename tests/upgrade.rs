//! `ALTER EXTENSION pglock UPDATE` from the first released version (0.1.0, its
//! install script kept in tests/upgrade/): locks taken under 0.1.0 survive with
//! their RVNs and data, their holders go on heartbeating and releasing, every
//! 0.2.0 function works, and the updated extension is the same, object for
//! object, as a fresh 0.2.0 install.

use std::path::PathBuf;

use pglock_tests::server::{self, Server};
use postgres::Client;

const OLD_VERSION: &str = "0.1.0";
/// The version this checkout builds (the root Cargo.toml's).
const NEW_VERSION: &str = "0.2.0";

/// Put the 0.1.0 install script next to the current one, as a server that had
/// 0.1.0 installed still has it.
fn install_old_script() {
    let target = PathBuf::from(server::pg_config("--sharedir"))
        .join("extension")
        .join(format!("pglock--{OLD_VERSION}.sql"));
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/upgrade/pglock--0.1.0.sql");
    std::fs::copy(source, &target).expect("copy the 0.1.0 install script");
}

fn version(client: &mut Client) -> String {
    client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pglock'",
            &[],
        )
        .unwrap()
        .get(0)
}

fn locks(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT format('%s|%s|%s|%s|%s|%s|%s', name, owner, rvn, lease, \
                    encode(data, 'escape'), released, holder_role::regrole) \
               FROM pglock.locks ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Every object of the extension, described with what users and security
/// depend on: definitions, privileges, settings, column types.
fn catalog(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT pg_describe_object(d.classid, d.objid, 0) || E'\\n' || coalesce(
                 CASE d.classid
                 WHEN 'pg_proc'::regclass THEN
                     (SELECT pg_get_functiondef(p.oid) || coalesce(p.proacl::text, '')
                        FROM pg_proc p WHERE p.oid = d.objid)
                 WHEN 'pg_class'::regclass THEN
                     (SELECT c.relkind::text || coalesce(c.relacl::text, '')
                             || coalesce(c.reloptions::text, '')
                             || coalesce(pg_get_viewdef(c.oid), '')
                             || coalesce((SELECT string_agg(a.attname || ' '
                                              || format_type(a.atttypid, a.atttypmod)
                                              || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                                              ', ' ORDER BY a.attnum)
                                            FROM pg_attribute a
                                           WHERE a.attrelid = c.oid AND a.attnum > 0), '')
                        FROM pg_class c WHERE c.oid = d.objid)
                 WHEN 'pg_namespace'::regclass THEN
                     (SELECT coalesce(n.nspacl::text, '') FROM pg_namespace n WHERE n.oid = d.objid)
                 END, '')
               FROM pg_depend d
              WHERE d.refclassid = 'pg_extension'::regclass
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pglock')
                AND d.deptype = 'e'
             UNION ALL
             SELECT 'config ' || extconfig::regclass[]::text FROM pg_extension WHERE extname = 'pglock'
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn locks_taken_under_0_1_0_survive_the_update_and_it_matches_a_fresh_install() {
    install_old_script();
    let server = Server::create("upgrade", 54346, &[]);
    let mut fresh = server.client();
    fresh.batch_execute("CREATE DATABASE old").unwrap();
    fresh
        .batch_execute("CREATE ROLE app LOGIN; GRANT pglock_user TO app")
        .unwrap();

    let mut admin = server.connect_to("old", "postgres").unwrap();
    admin
        .batch_execute(&format!("CREATE EXTENSION pglock VERSION '{OLD_VERSION}'"))
        .unwrap();
    assert_eq!(version(&mut admin), OLD_VERSION);
    let mut app = server.connect_to("old", "app").unwrap();
    let held: i64 = app
        .query_one(
            "SELECT rvn FROM pglock_acquire('held', 'a', '1 hour', 'one'::bytea)",
            &[],
        )
        .unwrap()
        .get(0);
    let renewed: i64 = app
        .query_one(
            "SELECT rvn FROM pglock_acquire('renewed', 'a', '1 hour', 'two'::bytea)",
            &[],
        )
        .unwrap()
        .get(0);
    let renewed: i64 = app
        .query_one("SELECT pglock_heartbeat('renewed', 'a', $1)", &[&renewed])
        .unwrap()
        .get(0);
    let kept: i64 = app
        .query_one("SELECT rvn FROM pglock_acquire('kept', 'a', '1 hour')", &[])
        .unwrap()
        .get(0);
    app.execute(
        "SELECT pglock_release('kept', 'a', $1, keep => true, data => 'three'::bytea)",
        &[&kept],
    )
    .unwrap();
    let before = locks(&mut admin);
    assert_eq!(before.len(), 3);

    admin
        .batch_execute("ALTER EXTENSION pglock UPDATE")
        .unwrap();
    assert_eq!(version(&mut admin), NEW_VERSION);
    assert_eq!(locks(&mut admin), before, "every lock as it was");

    // The same session's plans survive too; then a new session uses everything.
    let held: i64 = app
        .query_one("SELECT pglock_heartbeat('held', 'a', $1)", &[&held])
        .unwrap()
        .get(0);
    let mut app = server.connect_to("old", "app").unwrap();
    assert!(app
        .query_one("SELECT pglock_release('renewed', 'a', $1)", &[&renewed])
        .unwrap()
        .get::<_, bool>(0));
    let taken = app
        .query_one(
            "SELECT acquired, data FROM pglock_acquire_wait('kept', 'b', wait_timeout => '1 s')",
            &[],
        )
        .unwrap();
    assert!(taken.get::<_, bool>(0), "a kept lock is free");
    assert_eq!(
        taken.get::<_, Option<Vec<u8>>>(1).as_deref(),
        Some(&b"three"[..])
    );
    let row = app
        .query_one(
            "CALL pglock_acquire_wait_committing('fresh', 'b', wait_timeout => '1 s')",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>("acquired"));
    let listed: i64 = app
        .query_one(
            "SELECT count(*) FROM pglock_locks WHERE holder_role = 'app'::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 3, "held, kept (now b's) and fresh");
    let released: i64 = app
        .query_one("SELECT pglock_release_all('b')", &[])
        .unwrap()
        .get(0);
    assert_eq!(released, 2);
    assert!(app
        .query_one("SELECT pglock_release('held', 'a', $1)", &[&held])
        .unwrap()
        .get::<_, bool>(0));

    // Object for object, the update made what a fresh install makes.
    let updated = catalog(&mut admin);
    let installed = catalog(&mut fresh);
    assert!(installed.len() > 10, "{installed:#?}");
    assert_eq!(updated, installed);
}
