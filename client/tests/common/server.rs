//! Private PostgreSQL servers that a test starts, restarts, stops and promotes
//! itself. Like the scripts' servers they run as `postgres` from a folder under
//! /tmp and listen only on a socket in their own folder (the port only names the
//! socket); the tests run as root, as the test command does. They are of the
//! PostgreSQL under test: the one whose pg_config `PGLOCK_PG_CONFIG` names (the
//! test command sets it), else the `pg_config` on PATH; pglock must be installed
//! into it first (the test command does that).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pglock_tests::server::pg_bin;
use tokio::process::Command;
use tokio::time::{sleep, Instant};
use tokio_postgres::config::TargetSessionAttrs;

pub struct Server {
    dir: PathBuf,
    port: u16,
}

async fn as_postgres(program: &str, args: &[&str]) {
    let status = Command::new("runuser")
        // Servers started here should report errors as users' servers do.
        .env_remove("RUST_BACKTRACE")
        // PostgreSQL's programs go back to their starting folder: one postgres can read.
        .current_dir("/")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin().join(program))
        .args(args)
        .status()
        .await
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

fn chown_postgres(path: &Path) {
    let status = std::process::Command::new("chown")
        .arg("postgres:")
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown postgres {}", path.display());
}

impl Server {
    /// An empty folder for a server `name` on `port`, stopping one left running there.
    fn at(name: &str, port: u16) -> Server {
        let server = Server {
            dir: PathBuf::from(format!("/tmp/pglock-{name}")),
            port,
        };
        server.stop_now();
        let _ = fs::remove_dir_all(&server.dir);
        fs::create_dir_all(server.socket_dir()).expect("create the server's folders");
        chown_postgres(&server.dir);
        chown_postgres(&server.socket_dir());
        server
    }

    /// A new cluster `name` on `port` with `settings` in postgresql.conf, started,
    /// with pglock created in the database `postgres`.
    pub async fn create(name: &str, port: u16, settings: &[&str]) -> Server {
        let server = Server::at(name, port);
        let data = server.data_dir();
        as_postgres(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )
        .await;
        server.configure(settings);
        server.start().await;
        server.execute("CREATE EXTENSION pglock").await;
        server
    }

    /// A streaming standby of `primary`, started, named `name` on `port`; it
    /// connects to the primary as application `name` (for synchronous_standby_names).
    pub async fn standby_of(primary: &Server, name: &str, port: u16) -> Server {
        let server = Server::at(name, port);
        let source_port = primary.port.to_string();
        as_postgres(
            "pg_basebackup",
            &[
                "-D",
                path(&server.data_dir()),
                "-h",
                path(&primary.socket_dir()),
                "-p",
                &source_port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
            ],
        )
        .await;
        server.configure(&[&format!("cluster_name = '{}'", name.replace('-', "_"))]);
        server.start().await;
        server
    }

    fn configure(&self, settings: &[&str]) {
        let mut conf = format!(
            "\nport = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n",
            self.port,
            self.socket_dir().display()
        );
        for setting in settings {
            conf.push_str(setting);
            conf.push('\n');
        }
        let file = self.data_dir().join("postgresql.conf");
        let mut existing = fs::read_to_string(&file).expect("read postgresql.conf");
        existing.push_str(&conf);
        fs::write(&file, existing).expect("write postgresql.conf");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// Its database `postgres` as the superuser, `application_name` = `app`.
    pub fn pg_config(&self, app: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.socket_dir())
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .application_name(app);
        config
    }

    /// One connection string for several servers, as for a cluster: the first
    /// that accepts writes is used (`target_session_attrs=read-write`).
    pub fn cluster_config(servers: &[&Server], app: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        for server in servers {
            config.host_path(server.socket_dir()).port(server.port);
        }
        config
            .user("postgres")
            .dbname("postgres")
            .application_name(app)
            .target_session_attrs(TargetSessionAttrs::ReadWrite);
        config
    }

    /// Runs `sql` as the superuser on a connection of its own.
    pub async fn execute(&self, sql: &str) {
        self.connect()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    }

    /// A plain connection as the superuser.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (pg, connection) = self
            .pg_config("pglock-client-tests")
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to the private server");
        tokio::spawn(connection);
        pg
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let (data, log) = (self.data_dir(), self.dir.join("server.log"));
        let mut all = vec!["-D", path(&data), "-l", path(&log), "-w"];
        all.extend_from_slice(args);
        as_postgres("pg_ctl", &all).await;
    }

    pub async fn start(&self) {
        self.pg_ctl(&["start"]).await;
    }

    /// `pg_ctl restart -m fast`: sessions are ended, the server is back when it returns.
    pub async fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]).await;
    }

    /// `pg_ctl stop -m fast`.
    pub async fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]).await;
    }

    /// `pg_ctl stop -m immediate`: no shutdown checkpoint, as after a crash.
    pub async fn stop_immediately(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]).await;
    }

    pub async fn promote(&self) {
        self.pg_ctl(&["promote"]).await;
    }

    /// Waits until `standby_name` replicates synchronously from this server.
    pub async fn wait_for_sync_standby(&self, standby_name: &str, within: Duration) {
        let pg = self.connect().await;
        let deadline = Instant::now() + within;
        loop {
            let synchronous: i64 = pg
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication \
                      WHERE application_name = $1 AND sync_state = 'sync'",
                    &[&standby_name.replace('-', "_")],
                )
                .await
                .expect("read pg_stat_replication")
                .get(0);
            if synchronous == 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{standby_name} not synchronous within {within:?}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server at once if it runs; for clean-up, so it blocks.
    fn stop_now(&self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = std::process::Command::new("runuser")
                .current_dir("/")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("pg_ctl"))
                .args([
                    "-D",
                    path(&self.data_dir()),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .status();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("server paths are UTF-8")
}
