"""What the Python client costs over the SQL it sends: its acquire + release and a
hand-off between two workers, beside the same SQL driven by pgbench, in one run.

Run by ``bench.sh`` against the server of PGHOST, PGPORT, PGLOCK_TEST_DB (pglock
installed), with pgbench from ``PGLOCK_PG_CONFIG --bindir``. Each case runs
``--seconds`` per round, the Python and pgbench variants alternating, for
``--rounds`` rounds; it prints the medians and the ratio Python / pgbench.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pglock

LOCKS = 10_000
LEASE = "20 seconds"

ACQUIRE_RELEASE_SQL = f"""\
\\set id random(1, {LOCKS})
SELECT rvn FROM pglock_acquire('bench-' || :id, 'pgbench-' || :client_id, '{LEASE}') \\gset
SELECT pglock_release('bench-' || :id, 'pgbench-' || :client_id, :rvn);
"""

HANDOFF_SQL = f"""\
SELECT rvn FROM pglock_acquire_wait('bench-handoff-sql', 'pgbench-' || :client_id,
                                    '{LEASE}') \\gset
SELECT pglock_release('bench-handoff-sql', 'pgbench-' || :client_id, :rvn);
"""


def dsn() -> str:
    return (
        f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} "
        f"dbname={os.environ['PGLOCK_TEST_DB']} user={os.environ.get('PGUSER', 'postgres')}"
    )


def pgbench(script: str, clients: int, seconds: float) -> float:
    """Transactions (script runs) per second, from pgbench's report."""
    bindir = subprocess.run(
        [os.environ["PGLOCK_PG_CONFIG"], "--bindir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script)
    try:
        out = subprocess.run(
            [
                str(Path(bindir) / "pgbench"),
                "-n",
                "-M",
                "prepared",
                "-f",
                file.name,
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(max(int(seconds), 1)),
                "-h",
                os.environ["PGHOST"],
                "-p",
                os.environ["PGPORT"],
                "-U",
                os.environ.get("PGUSER", "postgres"),
                os.environ["PGLOCK_TEST_DB"],
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(file.name)
    for line in out.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(f"no tps in pgbench's output:\n{out}")


def python_acquire_release(seconds: float) -> float:
    """One thread: acquire (without waiting) + release of a random lock of 10,000."""
    with pglock.Client(dsn()) as client:
        count = 0
        end = time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            lock = client.acquire(f"bench-py-{random.randint(1, LOCKS)}", blocking=False)
            lock.release()
            count += 1
        return count / (time.monotonic() - start)


def psycopg_acquire_release(seconds: float) -> float:
    """The same two statements from psycopg alone: the floor of any Python client."""
    import psycopg

    with psycopg.connect(dsn(), autocommit=True) as conn:
        count = 0
        end = time.monotonic() + seconds
        start = time.monotonic()
        while time.monotonic() < end:
            name = f"bench-raw-{random.randint(1, LOCKS)}"
            row = conn.execute(
                "SELECT rvn FROM pglock_acquire(%s, 'raw', %s::interval)", (name, LEASE)
            ).fetchone()
            assert row is not None
            conn.execute("SELECT pglock_release(%s, 'raw', %s)", (name, row[0])).fetchone()
            count += 1
        return count / (time.monotonic() - start)


def psycopg_async_acquire_release(seconds: float) -> float:
    """The same two statements from psycopg's asyncio connection alone."""
    import psycopg

    async def run() -> float:
        async with await psycopg.AsyncConnection.connect(dsn(), autocommit=True) as conn:
            count = 0
            end = time.monotonic() + seconds
            start = time.monotonic()
            while time.monotonic() < end:
                name = f"bench-raw-{random.randint(1, LOCKS)}"
                cursor = await conn.execute(
                    "SELECT rvn FROM pglock_acquire(%s, 'raw', %s::interval)", (name, LEASE)
                )
                row = await cursor.fetchone()
                assert row is not None
                cursor = await conn.execute("SELECT pglock_release(%s, 'raw', %s)", (name, row[0]))
                await cursor.fetchone()
                count += 1
            return count / (time.monotonic() - start)

    return asyncio.run(run())


def python_async_acquire_release(seconds: float) -> float:
    async def run() -> float:
        async with pglock.AsyncClient(dsn()) as client:
            count = 0
            end = time.monotonic() + seconds
            start = time.monotonic()
            while time.monotonic() < end:
                name = f"bench-py-{random.randint(1, LOCKS)}"
                lock = await client.acquire(name, blocking=False)
                await lock.release()
                count += 1
            return count / (time.monotonic() - start)

    return asyncio.run(run())


def python_handoff(seconds: float) -> float:
    """Two workers, each with its own client, taking turns on one lock (waiting in
    the server): acquisitions per second, both together."""
    counts = [0, 0]
    end = time.monotonic() + seconds
    clients = [pglock.Client(dsn()) for _ in counts]

    def work(index: int) -> None:
        client = clients[index]
        while time.monotonic() < end:
            lock = client.acquire("bench-handoff-py", timeout=30)
            lock.release()
            counts[index] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = sum(counts) / (time.monotonic() - start)
    for client in clients:
        client.close()
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds, rounds = args.seconds, args.rounds
    cases: list[tuple[str, Callable[[], float], Callable[[], float]]] = [
        (
            "acquire + release, random lock of 10,000, 1 client (sync)",
            lambda: python_acquire_release(seconds),
            lambda: pgbench(ACQUIRE_RELEASE_SQL, 1, seconds),
        ),
        (
            "acquire + release, psycopg alone, the same SQL",
            lambda: psycopg_acquire_release(seconds),
            lambda: pgbench(ACQUIRE_RELEASE_SQL, 1, seconds),
        ),
        (
            "acquire + release, random lock of 10,000, 1 client (asyncio)",
            lambda: python_async_acquire_release(seconds),
            lambda: pgbench(ACQUIRE_RELEASE_SQL, 1, seconds),
        ),
        (
            "acquire + release, psycopg's asyncio alone, the same SQL",
            lambda: psycopg_async_acquire_release(seconds),
            lambda: pgbench(ACQUIRE_RELEASE_SQL, 1, seconds),
        ),
        (
            "hand-off: 2 workers contend for one lock (waiting in the server)",
            lambda: python_handoff(seconds),
            lambda: pgbench(HANDOFF_SQL, 2, seconds),
        ),
    ]
    print(
        f"pglock {pglock.__version__} Python client vs pgbench, medians of {rounds} x {seconds} s"
    )
    print("(ratio: the median of each round's Python / pgbench, the two run back to back)")
    print(f"{'case':<66} {'python/s':>9} {'pgbench/s':>9} {'ratio':>6}")
    for title, python, sql in cases:
        py_rates: list[float] = []
        sql_rates: list[float] = []
        for _ in range(rounds):
            py_rates.append(python())
            sql_rates.append(sql())
        py, pg = statistics.median(py_rates), statistics.median(sql_rates)
        ratio = statistics.median(p / s for p, s in zip(py_rates, sql_rates, strict=True))
        print(f"{title:<66} {py:>9,.0f} {pg:>9,.0f} {ratio:>5.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
