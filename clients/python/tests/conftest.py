"""What the tests share: the test server from the environment the test command
sets (PGHOST, PGPORT, PGUSER, PGLOCK_TEST_DB, PGLOCK_PG_CONFIG), roles, unique
lock names, and servers and PgBouncers of the tests' own (ports 55501-55519,
folders /tmp/pglock-py-*), run as postgres through the repository's
``scripts/as-postgres`` and stopped also when a test fails.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pglock

REPO = Path(__file__).resolve().parents[3]
AS_POSTGRES = REPO / "scripts" / "as-postgres"
PGBOUNCER = "/usr/sbin/pgbouncer"
PROGRAM_LIMIT = 120.0

_names = itertools.count()


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through clients/python/test.sh")
    return value


def dsn_for(
    host: str | None = None, port: str | int | None = None, user: str = "postgres", **extra: Any
) -> str:
    params = {
        "host": host or env("PGHOST"),
        "port": str(port or env("PGPORT")),
        "dbname": env("PGLOCK_TEST_DB"),
        "user": user,
        "options": "-c statement_timeout=60s",
        **extra,
    }
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="session", autouse=True)
def installed_package() -> None:
    """The tests run against the installed wheel, not the source tree."""
    if "site-packages" not in (pglock.__file__ or ""):
        pytest.fail(f"pglock imported from {pglock.__file__}, not from an installed wheel")


@pytest.fixture
def dsn() -> str:
    """The test database as the superuser."""
    return dsn_for()


def unique(prefix: str) -> str:
    """A lock name no other test (or run) uses."""
    return f"py-{prefix}-{os.getpid()}-{next(_names)}-{time.monotonic_ns() % 10**9}"


def superuser() -> psycopg.Connection[Any]:
    return psycopg.connect(dsn_for(), autocommit=True)


def login_role(role: str, member_of: tuple[str, ...] = ("pglock_user",)) -> str:
    """A login role, created once per name, guarded against concurrent creation."""
    with superuser() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pglock-tests roles'))")
        exists = conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists is None:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role))
            )
        for group in member_of:
            conn.execute(
                psycopg.sql.SQL("GRANT {} TO {}").format(
                    psycopg.sql.Identifier(group), psycopg.sql.Identifier(role)
                )
            )
    return role


def wait_for(what: str, check: Any, limit: float = 30.0, pause: float = 0.02) -> Any:
    """Polls ``check()`` until it returns something true; fails the test after ``limit``."""
    end = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {limit} s waiting for {what}")
        time.sleep(pause)


def bindir() -> Path:
    out = subprocess.run(
        [env("PGLOCK_PG_CONFIG"), "--bindir"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def as_postgres(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs a program as postgres to its end (bounded), through scripts/as-postgres."""
    result = subprocess.run(
        [str(AS_POSTGRES), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=PROGRAM_LIMIT,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{args} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def give_to_postgres(path: Path) -> None:
    shutil.chown(path, "postgres", "postgres")


class Server:
    """A private PostgreSQL of the version under test, pglock preloaded and created."""

    def __init__(self, name: str, port: int) -> None:
        self.dir = Path(f"/tmp/pglock-py-{name}")
        self.port = port
        self.socket = self.dir / "socket"
        self.data = self.dir / "data"

    def create(self, settings: tuple[str, ...] = ()) -> Server:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.socket.mkdir(parents=True)
        give_to_postgres(self.dir)
        give_to_postgres(self.socket)
        bin_ = bindir()
        as_postgres(
            bin_ / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync"
        )
        conf = [
            f"port = {self.port}",
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.socket}'",
            "shared_preload_libraries = 'pglock'",
            "fsync = off",
            *settings,
        ]
        with (self.data / "postgresql.conf").open("a") as file:
            file.write("\n".join(conf) + "\n")
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {env('PGLOCK_TEST_DB')}")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pglock")
        return self

    def dsn(self, dbname: str | None = None, **extra: Any) -> str:
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket),
            port=str(self.port),
            dbname=dbname or env("PGLOCK_TEST_DB"),
            user="postgres",
            **extra,
        )

    def pg_ctl(self, *args: str) -> None:
        as_postgres(bindir() / "pg_ctl", "-D", self.data, "-w", "-t", "60", *args)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.dir / "server.log"), "start")

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "restart", "-l", str(self.dir / "server.log"))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            as_postgres(bindir() / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop",
                        check=False)  # fmt: skip


class PgBouncer:
    """Debian's PgBouncer in transaction mode with a pool of 4 in front of the test server."""

    POOL_SIZE = 4

    def __init__(self, name: str, port: int) -> None:
        self.dir = Path(f"/tmp/pglock-py-{name}")
        self.port = port
        self.socket = self.dir / "socket"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        if not Path(PGBOUNCER).exists():
            pytest.fail(f"{PGBOUNCER} is missing: apt-get install -y pgbouncer")
        self._stop_left_over()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.socket.mkdir(parents=True)
        database = env("PGLOCK_TEST_DB")
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            f"[databases]\n{database} = host={env('PGHOST')} port={env('PGPORT')} "
            f"dbname={database}\n\n[pgbouncer]\npool_mode = transaction\n"
            f"default_pool_size = {self.POOL_SIZE}\nmax_client_conn = 200\nlisten_addr =\n"
            f"listen_port = {self.port}\nunix_socket_dir = {self.socket}\nauth_type = trust\n"
            f"auth_file = {self.dir}/userlist.txt\nadmin_users = postgres\n"
            f"pidfile = {self.dir}/pgbouncer.pid\n"
        )
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        for path in (self.dir, self.socket, ini, self.dir / "userlist.txt"):
            give_to_postgres(path)
        # In the foreground, as a child of ours: its pid is ours to stop.
        with (self.dir / "pgbouncer.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(AS_POSTGRES), PGBOUNCER, str(ini)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for("PgBouncer's socket", (self.socket / f".s.PGSQL.{self.port}").exists, limit=10)
        return self

    def _stop_left_over(self) -> None:
        """Stops a PgBouncer an earlier run left (killed before its clean-up)."""
        try:
            pid = int((self.dir / "pgbouncer.pid").read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            return
        if comm == "pgbouncer":
            os.kill(pid, signal.SIGTERM)
            wait_for("the old PgBouncer to exit", lambda: not Path(f"/proc/{pid}").exists())

    def dsn(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=str(self.socket), port=str(self.port), dbname=env("PGLOCK_TEST_DB"),
            user="postgres",
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    bouncer = PgBouncer("pgbouncer", 55502).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


def backends(application_name: str) -> list[int]:
    """The server pids of the connections with ``application_name``."""
    with superuser() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchall()
    return [row[0] for row in rows]
