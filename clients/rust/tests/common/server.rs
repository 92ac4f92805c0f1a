//! Private PostgreSQL servers that a test starts, restarts, stops and promotes
//! itself: the extension's tests' servers ([`pglock_tests::server::Server`]: of
//! the PostgreSQL under test, run as `postgres` from a folder under /tmp, on a
//! socket of their own), driven from async tests. Their programs (initdb,
//! pg_ctl, pg_basebackup) block, so they run on tokio's blocking threads: the
//! clients under test keep running, heartbeats included, while a server
//! restarts. pglock must be installed first (the test command does that).

use std::sync::Arc;
use std::time::Duration;

use pglock_tests::server::Server as BlockingServer;
use pglock_tests::STATEMENT_TIMEOUT;
use tokio::time::{sleep, Instant};
use tokio_postgres::config::TargetSessionAttrs;

use crate::common::superuser_config;

pub struct Server {
    // Shared with the blocking thread of an operation under way.
    inner: Arc<BlockingServer>,
}

/// `work`'s result, run on a blocking thread; its panic is the caller's.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("a server operation did not finish: {error}"),
    }
}

impl Server {
    /// A new cluster `name` on `port` with `settings` in postgresql.conf, started,
    /// with pglock created in the database `postgres`.
    pub async fn create(name: &str, port: u16, settings: &[&str]) -> Server {
        let name = name.to_owned();
        let settings: Vec<String> = settings.iter().map(|&setting| setting.to_owned()).collect();
        let server = blocking(move || {
            let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
            BlockingServer::create(&name, port, &settings)
        })
        .await;
        Server {
            inner: Arc::new(server),
        }
    }

    /// A streaming standby of `primary`, started, named `name` on `port`; it
    /// connects to the primary as application `name` (for synchronous_standby_names).
    pub async fn standby_of(primary: &Server, name: &str, port: u16) -> Server {
        let primary = Arc::clone(&primary.inner);
        let name = name.to_owned();
        let cluster_name = format!("cluster_name = '{}'", name.replace('-', "_"));
        let server =
            blocking(move || BlockingServer::standby_with(&primary, &name, port, &[&cluster_name]))
                .await;
        Server {
            inner: Arc::new(server),
        }
    }

    /// Its database `postgres` as the superuser, `application_name` = `app`.
    pub fn pg_config(&self, app: &str) -> tokio_postgres::Config {
        superuser_config(self.inner.socket_dir(), self.inner.port, "postgres", app)
    }

    /// One connection string for several servers, as for a cluster: the first
    /// that accepts writes is used (`target_session_attrs=read-write`), under
    /// the tests' guard.
    pub fn cluster_config(servers: &[&Server], app: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        for server in servers {
            config
                .host_path(server.inner.socket_dir())
                .port(server.inner.port);
        }
        config
            .user("postgres")
            .dbname("postgres")
            .application_name(app)
            .options(STATEMENT_TIMEOUT)
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

    /// Runs `operation` (one of pg_ctl's) to its end on a blocking thread.
    async fn pg_ctl(&self, operation: fn(&BlockingServer)) {
        let server = Arc::clone(&self.inner);
        blocking(move || operation(&server)).await;
    }

    pub async fn start(&self) {
        self.pg_ctl(BlockingServer::start).await;
    }

    /// `pg_ctl restart -m fast`: sessions are ended, the server is back when it returns.
    pub async fn restart(&self) {
        self.pg_ctl(BlockingServer::restart).await;
    }

    /// `pg_ctl stop -m fast`.
    pub async fn stop(&self) {
        self.pg_ctl(BlockingServer::stop).await;
    }

    /// `pg_ctl stop -m immediate`: no shutdown checkpoint, as after a crash.
    pub async fn stop_immediately(&self) {
        self.pg_ctl(BlockingServer::stop_immediately).await;
    }

    pub async fn promote(&self) {
        self.pg_ctl(BlockingServer::promote).await;
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
}
