"""A worker for the fault tests in plain SQL (psycopg 3, no pglock client): every
lock write is recorded in a ledger table on the cluster by the same statement,
so that the checker can prove, write by write, that every acknowledged write is
on the primary after the faults.

    ledger_worker.py CLIENT CONNINFO STORE_CONNINFO LOCKS LEASE_MS PERIOD_MS RUN_MS SEED

It keeps the timing rule every pglock client shares, by hand: a lock counts as
renewed at the moment the request of its last successful acquire or heartbeat
was sent (`sent`), and is lost at `sent + lease - margin`, margin = min(period,
lease / 4), unless a heartbeat succeeds first; lost at once when a heartbeat
raises 55000. Every call is abandoned at its time limit (a heartbeat's: the
period, or the deadline): the connection is closed and its outcome is unknown,
whatever it would have answered. (A cancel request would not do: a commit that
waits for a synchronous standby, cancelled, commits locally and answers success
with a WARNING.)

Lines are those of the Rust worker (clients/rust/examples/partition_worker.rs), with
`heartbeat` for each explicit heartbeat (invoke, complete, outcome, rvn) and
`server` (the node's address, from inet_server_addr()) on lock writes that
succeeded. `TRUST_CANCELLED=1` in the environment makes it cancel instead and
believe the answer: the naive client the checker must catch.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from typing import Any

import psycopg

from worker_common import LockChooser, Store, emit, hold_factor, parse

TRUST_CANCELLED = os.environ.get("TRUST_CANCELLED") == "1"

ACQUIRE = """
WITH a AS (SELECT acquired, rvn FROM pglock_acquire_wait(%(name)s, %(owner)s, %(lease)s::interval,
                                                       wait_timeout => %(wait)s::interval)),
     w AS (INSERT INTO partition_ledger (client, seq, op, name, rvn)
           SELECT %(owner)s, %(seq)s, 'acquire', %(name)s, rvn FROM a WHERE acquired)
SELECT acquired, rvn, host(inet_server_addr()) FROM a
"""
HEARTBEAT = """
WITH h AS (SELECT pglock_heartbeat(%(name)s, %(owner)s, %(rvn)s) AS rvn),
     w AS (INSERT INTO partition_ledger (client, seq, op, name, rvn)
           SELECT %(owner)s, %(seq)s, 'heartbeat', %(name)s, rvn FROM h)
SELECT true, rvn, host(inet_server_addr()) FROM h
"""
RELEASE = """
WITH r AS (SELECT pglock_release(%(name)s, %(owner)s, %(rvn)s, keep => true) AS released),
     w AS (INSERT INTO partition_ledger (client, seq, op, name, rvn)
           SELECT %(owner)s, %(seq)s, 'release', %(name)s, %(rvn)s FROM r WHERE released)
SELECT released, %(rvn)s::bigint, host(inet_server_addr()) FROM r
"""

class Cluster:
    """One connection to the primary, replaced when it breaks or a call is abandoned."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn: psycopg.Connection[Any] | None = None

    def drop(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                conn.close()
            except psycopg.Error:
                pass

    def call(self, query: str, params: dict[str, Any], limit: float) -> tuple[str, Any]:
        """("ok", row), ("fail", sqlstate) for an error the server raised, or
        ("unknown", why) when the call broke or was abandoned at `limit`."""
        if limit <= 0:
            return "unknown", "no time left"
        abandoned = threading.Event()
        conn: psycopg.Connection[Any] | None = None

        def abandon() -> None:
            abandoned.set()
            if conn is None:
                return
            if TRUST_CANCELLED:
                try:
                    conn.cancel()
                except psycopg.Error:
                    pass
            elif conn.pgconn.socket >= 0:
                # Shut the socket: the call fails at once, its answer unread.
                try:
                    import socket

                    socket.socket(fileno=os.dup(conn.pgconn.socket)).shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(limit, abandon)
        timer.start()
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.conninfo, autocommit=True,
                                            connect_timeout=max(1, min(int(limit), 2)))
            conn = self.conn
            if abandoned.is_set():
                raise TimeoutError("abandoned while connecting")
            row = conn.execute(query, params, prepare=False).fetchone()
            if abandoned.is_set() and not TRUST_CANCELLED:
                self.drop()
                return "unknown", "abandoned at its time limit"
            return "ok", row
        except psycopg.errors.QueryCanceled as error:
            self.drop()
            return "unknown", f"cancelled: {error}"
        except psycopg.errors.Error as error:
            if error.sqlstate and not error.sqlstate.startswith(("08", "57", "25")):
                return "fail", error.sqlstate
            self.drop()
            return "unknown", f"{error.sqlstate}: {error}"
        except (psycopg.Error, OSError, TimeoutError) as error:
            self.drop()
            return "unknown", str(error)
        finally:
            timer.cancel()


def main() -> int:
    args = parse(sys.argv[1:], __doc__ or "")
    if args is None:
        return 2
    name, lease, period, margin = args.name, args.lease, args.period, args.margin
    emit(name, "start", lang="sql", lease=lease, period=period, margin=margin,
         t=time.monotonic(), trust_cancelled=TRUST_CANCELLED)
    done = args.done
    rng = random.Random(args.seed)
    cluster, store = Cluster(args.conninfo), Store(args.store)
    counter = {"seq": 0, "write": 0}

    def next_seq() -> int:
        counter["seq"] += 1
        return counter["seq"]

    wait = max(lease / 2, 0.5)
    chooser = LockChooser(rng, args.locks)
    while not done():
        lock_name = chooser.next()
        invoke = time.monotonic()
        params = {"name": lock_name, "owner": name, "lease": f"{lease} seconds",
                  "wait": f"{wait} seconds", "seq": next_seq()}
        outcome, row = cluster.call(ACQUIRE, params, wait + period)
        complete = time.monotonic()
        if outcome == "ok" and row[0]:
            emit(name, "acquire", lock=lock_name, invoke=invoke, complete=complete, outcome="ok",
                 rvn=row[1], server=row[2], seq=params["seq"])
            chooser.held()
            hold(name, cluster, store, lock_name, row[1], invoke, lease, period, margin,
                 lease * hold_factor(rng), next_seq, counter, done)
        else:
            fields: dict[str, Any] = {"lock": lock_name, "invoke": invoke, "complete": complete,
                                      "outcome": "fail" if outcome == "ok" else outcome}
            if outcome != "ok":
                fields["error"] = str(row)
            emit(name, "acquire", **fields)
            if outcome != "ok":
                time.sleep(0.1)
        time.sleep(rng.random() * 0.2)
    emit(name, "stop", t=time.monotonic())
    cluster.drop()
    return 0


def hold(name: str, cluster: Cluster, store: Store, lock_name: str, rvn: int, sent: float,
         lease: float, period: float, margin: float, hold_for: float, next_seq: Any,
         counter: dict[str, int], done: Any) -> None:
    start = time.monotonic()
    deadline = sent + lease - margin
    next_beat = sent + period
    while True:
        now = time.monotonic()
        if now >= deadline:
            # Nothing was done past the deadline: that is when it counts as told.
            emit(name, "lost", lock=lock_name, t=deadline, reason="no heartbeat succeeded in time")
            return
        if now - start >= hold_for or done():
            break
        if now >= next_beat:
            seq = next_seq()
            invoke = time.monotonic()
            outcome, row = cluster.call(HEARTBEAT, {"name": lock_name, "owner": name, "rvn": rvn,
                                                    "seq": seq}, min(period, deadline - invoke))
            complete = time.monotonic()
            if outcome == "ok":
                rvn, sent = row[1], invoke
                deadline, next_beat = sent + lease - margin, sent + period
                emit(name, "heartbeat", lock=lock_name, invoke=invoke, complete=complete,
                     outcome="ok", rvn=rvn, server=row[2], seq=seq)
            elif outcome == "fail":
                emit(name, "heartbeat", lock=lock_name, invoke=invoke, complete=complete,
                     outcome="fail", error=row)
                emit(name, "lost", lock=lock_name, t=complete, reason=f"heartbeat raised {row}")
                return
            else:
                emit(name, "heartbeat", lock=lock_name, invoke=invoke, complete=complete,
                     outcome="unknown", error=str(row))
                next_beat = time.monotonic() + min(0.5, period)
            continue
        counter["write"] += 1
        accepted = store.write(lock_name, rvn, name, counter["write"])
        outcome = "unknown" if accepted is None else ("ok" if accepted else "fail")
        emit(name, "write", lock=lock_name, invoke=now, complete=time.monotonic(),
             outcome=outcome, token=rvn, seq=counter["write"])
        time.sleep(min(0.1 + random.random() * 0.2, max(0.0, next_beat - time.monotonic())))
    seq = next_seq()
    invoke = time.monotonic()
    outcome, row = cluster.call(RELEASE, {"name": lock_name, "owner": name, "rvn": rvn, "seq": seq},
                                period)
    fields: dict[str, Any] = {"lock": lock_name, "invoke": invoke, "complete": time.monotonic(),
                              "rvn": rvn, "seq": seq}
    if outcome == "ok":
        fields.update(outcome="ok" if row[0] else "fail", server=row[2])
    else:
        fields.update(outcome=outcome, error=str(row))
    emit(name, "release", **fields)


if __name__ == "__main__":
    sys.exit(main())
