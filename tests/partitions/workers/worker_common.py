"""What the two Python workers of the fault tests share (python_worker.py and
ledger_worker.py, run as scripts from this folder): their arguments, the JSON
lines they record, the fenced store, and the choice of lock to take next.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

OUT_LOCK = threading.Lock()


def emit(client: str, op: str, **fields: Any) -> None:
    """One operation of `client`, as a JSON line on stdout."""
    line = json.dumps({"client": client, "op": op, **fields})
    with OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@dataclass
class Args:
    """CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED, and
    the clients' timing rule's margin, min(period, lease / 4)."""

    name: str
    conninfo: str
    store: str
    locks: list[str]
    lease: float
    period: float
    margin: float
    end: float
    seed: int
    stopping: threading.Event = field(default_factory=threading.Event)

    def done(self) -> bool:
        """Whether the run is over: its time is up, or SIGTERM came."""
        return self.stopping.is_set() or time.monotonic() >= self.end


def parse(argv: list[str], usage: str) -> Args | None:
    """The worker's arguments, with SIGTERM ending the run; None (the usage
    printed) if they are not eight."""
    if len(argv) != 8:
        print(usage, file=sys.stderr)
        return None
    name, conninfo, store, locks, lease_ms, period_ms, run_ms, seed = argv
    lease, period = int(lease_ms) / 1000, int(period_ms) / 1000
    args = Args(name, conninfo, store, locks.split(","), lease, period, min(period, lease / 4),
                time.monotonic() + int(run_ms) / 1000, int(seed))
    signal.signal(signal.SIGTERM, lambda *_: args.stopping.set())
    return args


class LockChooser:
    """Which lock to ask for next: at random, except that PGLOCK_WORKER_FIRST=K
    makes the first the K-th (the harness lays out who holds what when its
    faults begin), and after a failed acquire the same lock again (a job that
    needs that lock): rivals keep watching its holder."""

    def __init__(self, rng: random.Random, locks: list[str]) -> None:
        self.rng = rng
        self.locks = locks
        self.first = os.environ.get("PGLOCK_WORKER_FIRST")
        self.again: str | None = None

    def next(self) -> str:
        lock_name = self.rng.choice(self.locks)
        if self.first is not None:
            lock_name, self.first = self.locks[int(self.first) % len(self.locks)], None
        elif self.again is not None:
            lock_name = self.again
        self.again = lock_name
        return lock_name

    def held(self) -> None:
        """The lock asked for was taken: the next is chosen afresh."""
        self.again = None


class Store:
    """The fenced store: one connection, opened again when it breaks."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn: psycopg.Connection[Any] | None = None

    def write(self, resource: str, token: int, writer: str, seq: int) -> bool | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2,
                                            options="-c statement_timeout=2000")
            row = self.conn.execute(
                "SELECT fenced_write(%s::text, %s::bigint, %s::text, %s::bigint)",
                (resource, token, writer, seq)).fetchone()
            return bool(row[0]) if row else None
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None


def hold_factor(rng: random.Random) -> float:
    """How long to hold a lock, in leases: PGLOCK_WORKER_HOLD=LOW,HIGH (0.2 to 1.2)."""
    try:
        low, high = (float(x) for x in os.environ.get("PGLOCK_WORKER_HOLD", "").split(","))
    except ValueError:
        low, high = 0.2, 1.2
    return low + (high - low) * rng.random()
