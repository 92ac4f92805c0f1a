//! Private PostgreSQL servers that a test starts, crashes and promotes itself.
//! Like the scripts' servers they run as `postgres` from a folder under /tmp, on
//! their own port and socket folder; the tests run as root, as CI does.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use postgres::{Client, NoTls};

/// `pg_config OPTION` (e.g. `--sharedir`) of the PostgreSQL under test: the one
/// whose pg_config `scripts/test.sh` names in `PGLOCK_PG_CONFIG`, else the
/// `pg_config` on PATH.
pub fn pg_config(option: &str) -> String {
    let program =
        std::env::var_os("PGLOCK_PG_CONFIG").unwrap_or_else(|| OsString::from("pg_config"));
    let output = Command::new(&program)
        .arg(option)
        .output()
        .unwrap_or_else(|error| panic!("run {program:?} {option}: {error}"));
    assert!(
        output.status.success(),
        "{program:?} {option} failed: {}",
        output.status
    );
    String::from_utf8(output.stdout)
        .expect("pg_config prints UTF-8")
        .trim()
        .to_owned()
}

/// The folder of that PostgreSQL's programs (initdb, pg_ctl, pg_dump, ...).
pub fn pg_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| PathBuf::from(pg_config("--bindir")))
}

pub struct Server {
    pub dir: PathBuf,
    pub port: u16,
    /// What the server's processes get in their environment besides ours.
    env: Vec<(String, String)>,
}

/// The longest a server program (initdb, pg_ctl, pg_basebackup) may take.
const PROGRAM_LIMIT: Duration = Duration::from_secs(120);

/// The one way the tests run a program as `postgres`: `scripts/as-postgres`,
/// which starts it from a folder postgres can read (a checkout may sit where it
/// cannot, e.g. root's home) and execs it, so the child's pid is the program's.
/// Servers started so report errors as users' servers do: without a
/// developer's `RUST_BACKTRACE`.
pub fn postgres_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/as-postgres"
    ));
    command.env_remove("RUST_BACKTRACE").arg(program);
    command
}

/// Run a server program (initdb, pg_ctl, ...) of the version under test as
/// `postgres`, to its end, with `env` besides the environment; panic with its
/// output if it fails.
fn as_postgres(program: &str, args: &[&str], env: &[(String, String)]) {
    // The environment goes to the program alone, through `env` run as postgres:
    // an LD_PRELOAD given to the helper that switches users would run as root.
    let mut command = postgres_command("env");
    command
        .args(env.iter().map(|(name, value)| format!("{name}={value}")))
        .arg(pg_bin().join(program))
        .args(args);
    let output = crate::output_within(&mut command, &format!("{program} {args:?}"), PROGRAM_LIMIT);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `scripts/private-server ACTION BINDIR DIR ARGS...`: the scripts' recipe of a
/// private server, for the version under test, to its end; panic with its
/// output if it fails.
fn private_server(action: &str, dir: &Path, args: &[String]) {
    let mut command = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/private-server"
    ));
    command
        .arg(action)
        .arg(pg_bin())
        .arg(dir)
        .args(args)
        .env_remove("RUST_BACKTRACE");
    let what = format!("private-server {action} {}", dir.display());
    let output = crate::output_within(&mut command, &what, PROGRAM_LIMIT);
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Gives `path` to `postgres`, which runs the servers (and other daemons) of tests.
pub fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .arg("postgres:")
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown postgres {}", path.display());
}

impl Server {
    fn at(name: &str, port: u16) -> Server {
        Server {
            dir: PathBuf::from(format!("/tmp/pglock-{name}")),
            port,
            env: Vec::new(),
        }
    }

    /// A new cluster named `name` on `port` with `settings` in postgresql.conf,
    /// started, with pglock created in the database `postgres`.
    pub fn create(name: &str, port: u16, settings: &[&str]) -> Server {
        Server::create_with_env(name, port, settings, &[])
    }

    /// [`Server::create`], its processes started with `env` in their
    /// environment (e.g. `LD_PRELOAD` and libfaketime's settings).
    pub fn create_with_env(
        name: &str,
        port: u16,
        settings: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut server = Server::at(name, port);
        server.env = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let mut lines = vec![server.port.to_string(), "fsync = on".to_owned()];
        lines.extend(settings.iter().map(|line| line.to_string()));
        private_server("create", &server.dir, &lines);
        server.start();
        server
            .client()
            .batch_execute("CREATE EXTENSION pglock")
            .expect("create pglock");
        server
    }

    /// A streaming standby of `primary`, started, named `name` on `port`.
    pub fn standby_of(primary: &Server, name: &str, port: u16) -> Server {
        Server::standby_with(primary, name, port, &["cluster_name = 'pglock_standby'"])
    }

    /// A streaming standby as [`Server::standby_of`] with `settings` in
    /// postgresql.conf, e.g. the `cluster_name` that names it to the primary (for
    /// `synchronous_standby_names`).
    pub fn standby_with(primary: &Server, name: &str, port: u16, settings: &[&str]) -> Server {
        let server = Server::at(name, port);
        server.stop_if_running();
        let _ = fs::remove_dir_all(&server.dir);
        fs::create_dir_all(server.socket_dir()).expect("create the server's folders");
        chown_postgres(&server.dir);
        chown_postgres(&server.socket_dir());
        let data = server.data_dir();
        let source_port = primary.port.to_string();
        as_postgres(
            "pg_basebackup",
            &[
                "-D",
                data.to_str().unwrap(),
                "-h",
                primary.socket_dir().to_str().unwrap(),
                "-p",
                &source_port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
            ],
            &[],
        );
        let mut lines = vec![server.port.to_string(), "fsync = on".to_owned()];
        lines.extend(settings.iter().map(|line| line.to_string()));
        private_server("configure", &server.dir, &lines);
        server.start();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        let mut all = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
        ];
        all.extend_from_slice(args);
        as_postgres("pg_ctl", &all, &self.env);
    }

    pub fn start(&self) {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        private_server("start", &self.dir, &env);
    }

    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]);
    }

    pub fn promote(&self) {
        self.pg_ctl(&["promote"]);
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// `pg_ctl stop -m immediate`: no shutdown checkpoint, as after a crash.
    pub fn stop_immediately(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    fn stop_if_running(&self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = postgres_command(pg_bin().join("pg_ctl"))
                .args([
                    "-D",
                    self.data_dir().to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .status();
        }
    }

    /// `kill -9` the postmaster and every process it started, as a power cut would.
    pub fn crash(&self) {
        let pid_file =
            fs::read_to_string(self.data_dir().join("postmaster.pid")).expect("pid file");
        let postmaster = pid_file.lines().next().expect("pid line").trim().to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .expect("pgrep");
        let mut pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        pids.insert(0, postmaster);
        let status = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pids:?}");
        // Wait until every process is gone, so the restart finds no leftovers.
        crate::wait_for(
            &format!("the killed server processes {pids:?} to exit"),
            crate::WAIT_LIMIT,
            || {
                !pids
                    .iter()
                    .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
            },
        );
    }

    pub fn connect_as(&self, role: &str) -> Result<Client, postgres::Error> {
        self.connect_to("postgres", role)
    }

    /// A connection to `database` as `role`.
    pub fn connect_to(&self, database: &str, role: &str) -> Result<Client, postgres::Error> {
        postgres::Config::new()
            .host_path(self.socket_dir())
            .port(self.port)
            .user(role)
            .dbname(database)
            .options(crate::STATEMENT_TIMEOUT)
            .connect(NoTls)
    }

    pub fn client(&self) -> Client {
        self.connect_as("postgres")
            .expect("connect to the private server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_if_running();
    }
}
