//! `ALTER EXTENSION pglock UPDATE` from every released version (their install
//! scripts kept in tests/old_releases/): locks taken under the old version survive
//! with their RVNs and data, their holders go on heartbeating and releasing,
//! every current function works, and the updated extension is the same, object
//! for object, as a fresh install of this version.

use std::path::PathBuf;

use pglock_tests::server::{self, Server};
use postgres::error::SqlState;
use postgres::Client;

/// Every released version, each updated from in a database of its own.
const OLD_VERSIONS: [&str; 3] = ["0.1.0", "0.2.0", "0.3.0"];

/// Put the old install scripts next to the current one, as a server that had
/// them installed still has them.
fn install_old_scripts() {
    let extension_dir = PathBuf::from(server::pg_config("--sharedir")).join("extension");
    for old in OLD_VERSIONS {
        let script = format!("pglock--{old}.sql");
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../old_releases")
            .join(&script);
        std::fs::copy(&source, extension_dir.join(&script)).expect("copy an old install script");
    }
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
/// depend on: definitions, privileges, settings, column types (of tables and of
/// row types).
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
                 WHEN 'pg_type'::regclass THEN
                     (SELECT coalesce(t.typacl::text, '')
                             || coalesce((SELECT string_agg(a.attname || ' '
                                              || format_type(a.atttypid, a.atttypmod),
                                              ', ' ORDER BY a.attnum)
                                            FROM pg_attribute a
                                           WHERE a.attrelid = t.typrelid AND a.attnum > 0), '')
                        FROM pg_type t WHERE t.oid = d.objid)
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
fn locks_taken_under_every_old_version_survive_the_update_and_it_matches_a_fresh_install() {
    install_old_scripts();
    let server = Server::create("upgrade", 54346, &[]);
    let mut fresh = server.client();
    fresh
        .batch_execute("CREATE ROLE app LOGIN; GRANT pglock_user TO app")
        .unwrap();
    let installed = catalog(&mut fresh);
    assert!(installed.len() > 10, "{installed:#?}");
    for old in OLD_VERSIONS {
        let database = format!("old_{}", old.replace('.', "_"));
        fresh
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .unwrap();
        let updated = update_from(&server, old, &database);
        assert_eq!(updated, installed, "updated from {old}");
    }
}

/// Take locks under `old` in `database`, update, use every function; the
/// updated extension's catalog.
fn update_from(server: &Server, old: &str, database: &str) -> Vec<String> {
    let mut admin = server.connect_to(database, "postgres").unwrap();
    admin
        .batch_execute(&format!("CREATE EXTENSION pglock VERSION '{old}'"))
        .unwrap();
    assert_eq!(version(&mut admin), old);
    // This library refuses to run the old version's functions (it needs the
    // update first: see the last check below), so the locks are written as the
    // old library wrote them.
    let write = |admin: &mut Client, name: &str, data: Option<&[u8]>, released: bool| -> i64 {
        admin
            .query_one(
                "INSERT INTO pglock.locks (name, owner, rvn, lease, data, released, holder_role) \
                 VALUES ($1, 'a', nextval('pglock.rvn_seq'), '1 hour', $2, $3, \
                         (SELECT oid FROM pg_roles WHERE rolname = 'app')) RETURNING rvn",
                &[&name, &data, &released],
            )
            .unwrap()
            .get(0)
    };
    let held = write(&mut admin, "held", Some(b"one"), false);
    let renewed = write(&mut admin, "renewed", Some(b"two"), false);
    write(&mut admin, "kept", Some(b"three"), true);
    let mut app = server.connect_to(database, "app").unwrap();
    let refused = app.query_one("SELECT pglock_heartbeat('held', 'a', $1)", &[&held]);
    let error = refused.expect_err("the old functions with the new library");
    assert_eq!(
        error
            .as_db_error()
            .map(|db| (db.code().clone(), db.message())),
        Some((
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pglock: the extension in this database is older than its library"
        )),
        "{error}"
    );
    let before = locks(&mut admin);
    assert_eq!(before.len(), 3);

    admin
        .batch_execute("ALTER EXTENSION pglock UPDATE")
        .unwrap();
    let installed: String = admin
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'pglock'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version(&mut admin), installed);
    assert_eq!(locks(&mut admin), before, "every lock as it was");

    // The same session's plans survive too; then a new session uses everything.
    let held: i64 = app
        .query_one("SELECT pglock_heartbeat('held', 'a', $1)", &[&held])
        .unwrap()
        .get(0);
    let mut app = server.connect_to(database, "app").unwrap();
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
    // What 0.3.0 added: a fence, a bulk renewal, a semaphore's slot.
    let fenced: i64 = app
        .query_one("SELECT pglock_fence('held', 'a', $1)", &[&held])
        .unwrap()
        .get(0);
    assert_eq!(fenced, held);
    let held: i64 = app
        .query_one(
            "SELECT rvn FROM pglock_heartbeat_many('a', ARRAY['held'], ARRAY[$1::bigint]) \
              WHERE renewed",
            &[&held],
        )
        .unwrap()
        .get(0);
    let slot: String = app
        .query_one(
            "SELECT slot_name FROM pglock_acquire_slot('slots', 'b', 2) WHERE acquired",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(slot, "slots#1");
    // What 0.4.0 added: a watch, which returns at once for a lock already past
    // the RVN given, and the view's count of each lock's waiters.
    let watched: i64 = app
        .query_one(
            "SELECT rvn FROM pglock_watch('held', $1::bigint - 1, '1 s')",
            &[&held],
        )
        .unwrap()
        .get(0);
    assert_eq!(watched, held);
    let waiting: i32 = app
        .query_one("SELECT waiters FROM pglock_locks WHERE name = 'held'", &[])
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
    let listed: i64 = app
        .query_one(
            "SELECT count(*) FROM pglock_locks WHERE holder_role = 'app'::regrole",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 4, "held, kept (now b's), fresh and slots#1");
    let released: i64 = app
        .query_one("SELECT pglock_release_all('b')", &[])
        .unwrap()
        .get(0);
    assert_eq!(released, 3);
    assert!(app
        .query_one("SELECT pglock_release('held', 'a', $1)", &[&held])
        .unwrap()
        .get::<_, bool>(0));

    // Object for object, the update must make what a fresh install makes.
    catalog(&mut admin)
}
