"""A worker for the fault tests, on the Python client (clients/python): takes
locks, works under them, writes what it did to the fenced store, and records
every operation as one JSON line on stdout, for the history checker.

    python_worker.py CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED

The arguments and lines are those of the Rust worker
(clients/rust/examples/partition_worker.rs). Needs psycopg 3 and the client's
package on the path (PYTHONPATH=clients/python/src).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from typing import Any

import pglock

from worker_common import LockChooser, Store, emit, hold_factor, parse


def main() -> int:
    args = parse(sys.argv[1:], __doc__ or "")
    if args is None:
        return 2
    name, lease, period = args.name, args.lease, args.period
    emit(name, "start", lang="python", lease=lease, period=period, margin=args.margin,
         t=time.monotonic())
    done = args.done
    rng = random.Random(args.seed)
    store = Store(args.store)
    seq = 0
    wait = max(lease / 2, 0.5)
    client = None
    while client is None and not done():
        try:
            client = pglock.Client(args.conninfo, owner=name, lease=lease, period=period)
        except pglock.PglockError as error:
            print(f"connect: {error}", file=sys.stderr)
            time.sleep(0.2)
    if client is None:
        emit(name, "stop", t=time.monotonic())
        return 0
    chooser = LockChooser(rng, args.locks)
    while not done():
        lock_name = chooser.next()
        told: list[float] = []
        invoke = time.monotonic()
        try:
            lock = client.acquire(lock_name, timeout=wait,
                                  on_lost=lambda _e, told=told: told.append(time.monotonic()))
        except pglock.NotAcquired:
            emit(name, "acquire", lock=lock_name, invoke=invoke, complete=time.monotonic(),
                 outcome="fail")
            continue
        except pglock.PglockError as error:
            emit(name, "acquire", lock=lock_name, invoke=invoke, complete=time.monotonic(),
                 outcome="unknown", error=str(error))
            time.sleep(0.1)
            continue
        emit(name, "acquire", lock=lock_name, invoke=invoke, complete=time.monotonic(),
             outcome="ok", rvn=lock.rvn)
        chooser.held()
        seq = hold(name, store, lock, lock_name, lease * hold_factor(rng), seq, done, told)
        time.sleep(rng.random() * 0.2)
    emit(name, "stop", t=time.monotonic())
    client.close()
    return 0


def hold(name: str, store: Store, lock: pglock.Lock, lock_name: str, hold_for: float, seq: int,
         done: Any, told: list[float]) -> int:
    """Works under ``lock`` for ``hold_for`` seconds (a fenced write every 100 to
    300 ms), then releases it keeping its row, unless it was lost first."""
    # When the loss was seen: a thread looks every 2 ms (the signal also reads
    # its deadline itself), and the callback notes when it ran.
    watching = threading.Event()

    def watch() -> None:
        while not watching.wait(0.002):
            if lock.lost.is_set():
                told.append(time.monotonic())
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    rvn = lock.rvn
    try:
        while True:
            now = time.monotonic()
            if lock.lost.is_set() and lock.lost_reason is not None:
                at = min(told) if told else now
                emit(name, "lost", lock=lock_name, t=at, reason=str(lock.lost_reason))
                return seq
            if lock.rvn != rvn:
                rvn = lock.rvn
                emit(name, "renew", lock=lock_name, t=now, rvn=rvn)
            if now - start >= hold_for or done():
                break
            seq += 1
            accepted = store.write(lock_name, rvn, name, seq)
            outcome = "unknown" if accepted is None else ("ok" if accepted else "fail")
            emit(name, "write", lock=lock_name, invoke=now, complete=time.monotonic(),
                 outcome=outcome, token=rvn, seq=seq)
            lock.lost.wait(0.1 + random.random() * 0.2)
    finally:
        watching.set()
    invoke = time.monotonic()
    presented = lock.rvn
    outcome, error = "ok", None
    try:
        lock.release(keep=True)
    except pglock.LockLost:
        outcome = "fail"
    except pglock.PglockError as failure:
        outcome, error = "unknown", str(failure)
    fields: dict[str, Any] = {"lock": lock_name, "invoke": invoke, "complete": time.monotonic(),
                              "outcome": outcome, "rvn": presented}
    if error:
        fields["error"] = error
    emit(name, "release", **fields)
    return seq


if __name__ == "__main__":
    sys.exit(main())
