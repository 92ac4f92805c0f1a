//! PgBouncer (Debian's `pgbouncer` package, 1.18) in transaction pooling mode in
//! front of the test server, as a new user would set it up. A test starts its own:
//! it runs as `postgres` from a folder under /tmp, listens only on a socket in that
//! folder (the port only names the socket) and is stopped when dropped. The test
//! command installs the package.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pglock_tests::server::{chown_postgres, pg_bin, postgres_command};
use pglock_tests::{server_port, server_socket_dir, test_database, STATEMENT_TIMEOUT};
use tokio::process::Command;
use tokio::time::{sleep, Instant};

use crate::common::superuser_config_unguarded;

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// Server connections per database and user: fewer than the tests' clients, so
/// that clients take turns on them.
pub const POOL_SIZE: usize = 4;

pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// A PgBouncer `name` on `port`, pooling the test database (same name) in
    /// transaction mode with `POOL_SIZE` server connections, started.
    pub async fn start(name: &str, port: u16) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is missing: install Debian's pgbouncer package (the test command does)"
        );
        let pgbouncer = PgBouncer {
            dir: PathBuf::from(format!("/tmp/pglock-pgbouncer-{name}")),
            port,
        };
        pgbouncer.stop_now();
        let _ = fs::remove_dir_all(&pgbouncer.dir);
        fs::create_dir_all(pgbouncer.socket_dir()).expect("create PgBouncer's folders");
        pgbouncer.write_config();
        chown_postgres(&pgbouncer.dir);
        chown_postgres(&pgbouncer.socket_dir());
        pgbouncer.run().await;
        pgbouncer
    }

    fn write_config(&self) {
        let database = test_database();
        let ini = format!(
            "[databases]\n\
             {database} = host={server_socket} port={server_port} dbname={database} \
             connect_query='{guard}'\n\
             \n\
             [pgbouncer]\n\
             pool_mode = transaction\n\
             default_pool_size = {POOL_SIZE}\n\
             max_client_conn = 200\n\
             listen_addr =\n\
             listen_port = {port}\n\
             unix_socket_dir = {socket}\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = postgres\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            server_socket = server_socket_dir().display(),
            server_port = server_port(),
            port = self.port,
            socket = self.socket_dir().display(),
            dir = self.dir.display(),
            guard = guard_query().replace('\'', "''"),
        );
        fs::write(self.dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        // `trust` still wants the user listed.
        fs::write(self.dir.join("userlist.txt"), "\"postgres\" \"\"\n")
            .expect("write userlist.txt");
        for file in ["pgbouncer.ini", "userlist.txt"] {
            chown_postgres(&self.dir.join(file));
        }
    }

    /// Starts the daemon and waits until it takes connections.
    async fn run(&self) {
        let ini = self.dir.join("pgbouncer.ini");
        let status = Command::from(postgres_command(PGBOUNCER))
            .args(["-d", path(&ini)])
            .status()
            .await
            .expect("run pgbouncer");
        assert!(status.success(), "pgbouncer failed to start: {status}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket_file().exists() {
            assert!(
                Instant::now() < deadline,
                "PgBouncer not listening after 10 s; its log:\n{}",
                fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it at once (`SIGTERM`: client connections are closed) and starts it
    /// again with the same settings, as a restart or redeploy of the pooler does.
    pub async fn restart(&self) {
        self.stop_now();
        self.run().await;
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// The test database through PgBouncer, as the superuser, `application_name` =
    /// `app`. Without the tests' guard, which PgBouncer refuses from a client:
    /// it sets it on each server connection it opens ([`guard_query`]).
    pub fn pg_config(&self, app: &str) -> tokio_postgres::Config {
        superuser_config_unguarded(self.socket_dir(), self.port, &test_database(), app)
    }

    /// Runs `commands` with psql through PgBouncer, each in autocommit (one `-c`
    /// each), stopping at the first error.
    pub async fn psql(&self, commands: &[&str]) -> Output {
        let port = self.port.to_string();
        let database = test_database();
        Command::new(pg_bin().join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", path(&self.socket_dir()), "-p", &port])
            .args(["-U", "postgres", "-d", &database])
            .args(commands.iter().flat_map(|command| ["-c", command]))
            .env_remove("PGOPTIONS")
            .output()
            .await
            .expect("run psql")
    }

    /// Stops the daemon if it runs (one left by an earlier run included), and
    /// waits until it has gone; blocks, for clean-up.
    fn stop_now(&self) {
        let pidfile = self.dir.join("pgbouncer.pid");
        let Some(pid) = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        else {
            return;
        };
        // Only a PgBouncer: the pid may have been reused since an earlier run.
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "pgbouncer" {
            let _ = fs::remove_file(&pidfile);
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if std::time::Instant::now() > deadline {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(&pidfile);
        // A socket left by a killed daemon would pass for the next one's.
        let _ = fs::remove_file(self.socket_file());
    }

    fn socket_file(&self) -> PathBuf {
        self.socket_dir().join(format!(".s.PGSQL.{}", self.port))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The tests' guard ([`STATEMENT_TIMEOUT`], `-c name=value`) as the statement
/// PgBouncer runs on each server connection it opens (its `connect_query`).
fn guard_query() -> String {
    let setting = STATEMENT_TIMEOUT
        .strip_prefix("-c ")
        .and_then(|setting| setting.split_once('='));
    let (name, value) = setting.expect("STATEMENT_TIMEOUT is `-c name=value`");
    format!("SET {name} = '{value}'")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("PgBouncer's paths are UTF-8")
}
