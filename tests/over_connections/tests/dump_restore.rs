//! `pg_dump` and `pg_restore` carry pglock's state: every lock row comes back as
//! it was, its holder goes on heartbeating and releasing, and the RVN sequence
//! goes on above every RVN ever issued, so no fencing token is handed out twice.
//!
//! Each lock records the role that acquired it (`holder_role`, a regrole), and a
//! dump of one database carries no roles but writes each holder as a role name.
//! Restored into another cluster (simulated by re-creating the role with a new
//! OID), each lock maps to the role of that name; where no such role exists the
//! restore fails loudly instead of handing the lock to whichever role the old
//! OID would name there.

use std::process::Command;
use std::time::Duration;

use pglock_tests::server::{self, Server};
use pglock_tests::{heartbeat, output_within, release, Client};

const PORT: u16 = 54344;
/// The longest pg_dump or pg_restore may take.
const PROGRAM_LIMIT: Duration = Duration::from_secs(120);
const RESTORED: &str = "pglock_restored";
const ELSEWHERE: &str = "pglock_elsewhere";
const NO_ROLE: &str = "pglock_no_role";
/// Holds most locks; re-created with a new OID at the end.
const APP: &str = "pglock_dr_app";
/// Holds one lock and keeps its OID throughout.
const OTHER: &str = "pglock_dr_other";

/// One row of `pglock.locks`, every column.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    owner: String,
    rvn: i64,
    lease: String,
    data: Option<Vec<u8>>,
    released: bool,
    holder_role: u32,
    updated_at: String,
}

fn rows(admin: &mut Client) -> Vec<Row> {
    admin
        .query(
            "SELECT name, owner, rvn, lease::text, data, released, holder_role::oid,
                    updated_at::text
               FROM pglock.locks ORDER BY name",
            &[],
        )
        .expect("read pglock.locks")
        .iter()
        .map(|row| Row {
            name: row.get(0),
            owner: row.get(1),
            rvn: row.get(2),
            lease: row.get(3),
            data: row.get(4),
            released: row.get(5),
            holder_role: row.get(6),
            updated_at: row.get(7),
        })
        .collect()
}

/// The RVN sequence: its last value and whether that value was handed out.
fn rvn_sequence(admin: &mut Client) -> (i64, bool) {
    let row = admin
        .query_one("SELECT last_value, is_called FROM pglock.rvn_seq", &[])
        .expect("read pglock.rvn_seq");
    (row.get(0), row.get(1))
}

/// Run a client program of PostgreSQL as root against the server's socket.
fn run(server: &Server, program: &str, args: &[&str]) {
    let port = server.port.to_string();
    let socket = server.socket_dir();
    let output = output_within(
        Command::new(server::pg_bin().join(program))
            .args([
                "-h",
                socket.to_str().unwrap(),
                "-p",
                &port,
                "-U",
                "postgres",
            ])
            .args(args),
        &format!("{program} {args:?}"),
        PROGRAM_LIMIT,
    );
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Acquire `name` (it must be free), storing `data`; the new RVN.
fn acquire_with(client: &mut Client, name: &str, owner: &str, lease: &str, data: &[u8]) -> i64 {
    let row = client
        .query_one(
            "SELECT acquired, rvn FROM pglock_acquire($1, $2, lease => $3::text::interval,
                                                      data => $4)",
            &[&name, &owner, &lease, &data],
        )
        .unwrap_or_else(|error| panic!("acquire {name}: {error}"));
    assert!(row.get::<_, bool>(0), "{name} must be free");
    row.get(1)
}

/// The row `pglock_acquire` returns: acquired, RVN, owner, data.
fn try_acquire(
    client: &mut Client,
    name: &str,
    owner: &str,
    observed_rvn: Option<i64>,
) -> (bool, i64, String, Option<Vec<u8>>) {
    let row = client
        .query_one(
            "SELECT acquired, rvn, owner, data FROM pglock_acquire($1, $2, '30 seconds',
                                                                  observed_rvn => $3)",
            &[&name, &owner, &observed_rvn],
        )
        .unwrap_or_else(|error| panic!("acquire {name}: {error}"));
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn role_oid(admin: &mut Client, role: &str) -> u32 {
    admin
        .query_one("SELECT oid FROM pg_roles WHERE rolname = $1", &[&role])
        .expect("role oid")
        .get(0)
}

#[test]
fn dump_and_restore_keep_every_lock_and_the_rvn_sequence() {
    let server = Server::create("dump-restore", PORT, &[]);
    let mut admin = server.client();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {APP} LOGIN; GRANT pglock_user TO {APP};
             CREATE ROLE {OTHER} LOGIN; GRANT pglock_user TO {OTHER};"
        ))
        .expect("create roles");
    let mut app = server.connect_as(APP).expect("connect as app");
    let mut other = server.connect_as(OTHER).expect("connect as other");

    // held: acquired with data.
    let held = acquire_with(&mut app, "held", "worker-1", "1 hour", b"held data");
    // kept: released with keep => true and a checkpoint in its data.
    let rvn = acquire_with(&mut app, "kept", "worker-2", "30 seconds", b"v1");
    let released: bool = app
        .query_one(
            "SELECT pglock_release('kept', 'worker-2', $1, keep => true, data => $2)",
            &[&rvn, &b"checkpoint 7".as_slice()],
        )
        .unwrap()
        .get(0);
    assert!(released);
    // beating: heartbeated twice, the second time with new data and a new lease.
    let rvn = acquire_with(&mut app, "beating", "worker-3", "30 seconds", b"beat 0");
    let rvn = heartbeat(&mut app, "beating", "worker-3", rvn).unwrap();
    let beating: i64 = app
        .query_one(
            "SELECT pglock_heartbeat('beating', 'worker-3', $1, data => $2,
                                     lease => '90 seconds')",
            &[&rvn, &b"beat 2".as_slice()],
        )
        .unwrap()
        .get(0);
    // other: held by another role.
    let held_by_other = acquire_with(&mut other, "other", "worker-4", "1 hour", b"other data");
    // gone: the last RVN issued belongs to a lock released without keep, so no
    // row carries it; the restored sequence must still go on above it.
    let gone = acquire_with(&mut app, "gone", "worker-5", "30 seconds", b"");
    assert!(release(&mut app, "gone", "worker-5", gone, false).unwrap());

    let before = rows(&mut admin);
    let names: Vec<&str> = before.iter().map(|row| row.name.as_str()).collect();
    assert_eq!(names, ["beating", "held", "kept", "other"]);
    let highest_in_rows = before.iter().map(|row| row.rvn).max().unwrap();
    assert!(gone > highest_in_rows);
    assert_eq!(rvn_sequence(&mut admin), (gone, true));

    // Dump the database, restore it into a new one in the same cluster.
    let dump = server.dir.join("postgres.dump");
    run(
        &server,
        "pg_dump",
        &["-Fc", "-d", "postgres", "-f", dump.to_str().unwrap()],
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {RESTORED}"))
        .unwrap();
    run(
        &server,
        "pg_restore",
        &["--exit-on-error", "-d", RESTORED, dump.to_str().unwrap()],
    );

    let mut restored_admin = server.connect_to(RESTORED, "postgres").unwrap();
    assert_eq!(
        rows(&mut restored_admin),
        before,
        "every lock row restored as it was"
    );
    assert_eq!(rvn_sequence(&mut restored_admin), (gone, true));
    assert_eq!(rows(&mut admin), before, "the dump changed nothing");
    let version = "SELECT extversion FROM pg_extension WHERE extname = 'pglock'";
    let restored_version: String = restored_admin.query_one(version, &[]).unwrap().get(0);
    let original_version: String = admin.query_one(version, &[]).unwrap().get(0);
    assert_eq!(restored_version, original_version);

    // The holders go on where they were.  The first RVN drawn after the restore
    // is larger than every RVN issued before the dump, the deleted lock's too.
    let mut app = server.connect_to(RESTORED, APP).unwrap();
    let mut other = server.connect_to(RESTORED, OTHER).unwrap();
    let held_now = heartbeat(&mut app, "held", "worker-1", held).unwrap();
    assert!(
        held_now > gone,
        "RVN {held_now} after the restore, {gone} before"
    );
    let refused = try_acquire(&mut other, "held", "intruder", None);
    // Another role sees who holds the lock, not its data.
    assert_eq!(refused, (false, held_now, "worker-1".into(), None));
    let beating_now = heartbeat(&mut app, "beating", "worker-3", beating).unwrap();
    assert!(beating_now > held_now);
    assert!(release(&mut app, "beating", "worker-3", beating_now, false).unwrap());
    let other_now = heartbeat(&mut other, "other", "worker-4", held_by_other).unwrap();
    assert!(other_now > beating_now);
    // The kept lock is free, with its checkpoint, for the next holder of its role.
    let (acquired, kept_now, _, data) = try_acquire(&mut app, "kept", "worker-6", None);
    assert!(acquired);
    assert!(kept_now > other_now);
    assert_eq!(data.as_deref(), Some(b"checkpoint 7".as_slice()));
    let (acquired, gone_now, _, _) = try_acquire(&mut app, "gone", "worker-7", None);
    assert!(acquired && gone_now > kept_now);

    // Another cluster: roles of the same names, other OIDs.  Re-creating APP
    // gives it a new OID, as another cluster would; restored there, its locks
    // map to it by name, because holder_role is a regrole and dumps as a name.
    drop(app);
    let old_oid = role_oid(&mut admin, APP);
    admin
        .batch_execute(&format!(
            "DROP ROLE {APP}; CREATE ROLE {APP} LOGIN; GRANT pglock_user TO {APP};"
        ))
        .expect("re-create the app role");
    let new_oid = role_oid(&mut admin, APP);
    assert_ne!(new_oid, old_oid);
    admin
        .batch_execute(&format!("CREATE DATABASE {ELSEWHERE}"))
        .unwrap();
    run(
        &server,
        "pg_restore",
        &["--exit-on-error", "-d", ELSEWHERE, dump.to_str().unwrap()],
    );
    let mut elsewhere_admin = server.connect_to(ELSEWHERE, "postgres").unwrap();
    let roles: Vec<(String, u32)> = rows(&mut elsewhere_admin)
        .into_iter()
        .map(|row| (row.name, row.holder_role))
        .collect();
    let other_oid = role_oid(&mut admin, OTHER);
    assert_eq!(
        roles,
        [
            ("beating".to_owned(), new_oid),
            ("held".to_owned(), new_oid),
            ("kept".to_owned(), new_oid),
            ("other".to_owned(), other_oid)
        ]
    );
    let mut app = server.connect_to(ELSEWHERE, APP).unwrap();
    let renewed = heartbeat(&mut app, "held", "worker-1", held).unwrap();
    assert!(renewed > gone);
    assert!(release(&mut app, "held", "worker-1", renewed, false).unwrap());

    // A cluster without the holder's role: the restore fails loudly rather than
    // hand the lock to whatever role the old OID names there.
    admin
        .batch_execute(&format!("DROP OWNED BY {OTHER}; DROP ROLE {OTHER}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {NO_ROLE}"))
        .unwrap();
    let port = server.port.to_string();
    let output = output_within(
        Command::new(server::pg_bin().join("pg_restore"))
            .args([
                "-h",
                server.socket_dir().to_str().unwrap(),
                "-p",
                &port,
                "-U",
                "postgres",
            ])
            .args(["--exit-on-error", "-d", NO_ROLE, dump.to_str().unwrap()]),
        "pg_restore without the role",
        PROGRAM_LIMIT,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("role \"{OTHER}\" does not exist")),
        "{stderr}"
    );
}
