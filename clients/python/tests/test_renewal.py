"""200 locks held by one client are renewed by about one ``pglock_heartbeat_many``
call per period, counted by the server in ``pg_stat_user_functions`` (the
client's sessions set ``track_functions = 'all'``, as the superuser may)."""

from __future__ import annotations

import asyncio
import time

import psycopg

import pglock
from conftest import dsn_for, superuser, unique, wait_for

LOCKS = 200
LEASE = 3.0
PERIOD = 1.0
HOLD = 4.5


def calls(application_name: str) -> dict[str, int]:
    """Calls of pglock's renewal functions, once the client's sessions have ended
    (a backend's function counts reach the statistics at the latest when it exits)."""
    wait_for(
        "the client's sessions to end",
        lambda: (
            not superuser()
            .execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (application_name,)
            )
            .fetchone()
        ),
    )
    with superuser() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT funcname, calls FROM pg_stat_user_functions "
            "WHERE funcname IN ('pglock_heartbeat_many', 'pglock_heartbeat')"
        ).fetchall()
    return {row[0]: row[1] for row in rows}


def tracked_dsn(application_name: str) -> str:
    return dsn_for(
        application_name=application_name,
        options="-c statement_timeout=60s -c track_functions=all",
    )


def check_counts(
    before: dict[str, int], after: dict[str, int], renewals: int, held: float
) -> None:
    many = after.get("pglock_heartbeat_many", 0) - before.get("pglock_heartbeat_many", 0)
    single = after.get("pglock_heartbeat", 0) - before.get("pglock_heartbeat", 0)
    assert single == 0, "no single heartbeats"
    # The client counts the calls that succeeded; the server, every call.
    assert many >= renewals, (many, renewals)
    # One call per period for all 200 (a first one or two while the locks taken
    # at different times fall into step), never one per lock.
    assert 1 <= renewals <= many <= held / PERIOD + 2, (many, held)


def test_two_hundred_locks_are_renewed_by_one_call_per_period() -> None:
    app = unique("renew")
    before = calls(app)
    with pglock.Client(tracked_dsn(app), lease=LEASE, period=PERIOD) as client:
        names = [unique(f"many-{i}") for i in range(LOCKS)]
        start = time.monotonic()
        locks = [client.acquire(name, blocking=False) for name in names]
        first = {lock.name: lock.rvn for lock in locks}
        time.sleep(HOLD)
        assert all(lock.locked() for lock in locks), "no lock lost"
        assert all(lock.rvn != first[lock.name] for lock in locks), "every lock renewed"
        for lock in locks:
            lock.release()
        held = time.monotonic() - start
        renewals = client.renewals
    check_counts(before, calls(app), renewals, held)


async def test_the_async_client_renews_two_hundred_locks_by_one_call_per_period() -> None:
    app = unique("renew-async")
    before = await asyncio.to_thread(calls, app)
    async with pglock.AsyncClient(tracked_dsn(app), lease=LEASE, period=PERIOD) as client:
        start = time.monotonic()
        locks = [
            await client.acquire(unique(f"many-async-{i}"), blocking=False) for i in range(LOCKS)
        ]
        first = {lock.name: lock.rvn for lock in locks}
        await asyncio.sleep(HOLD)
        assert all(lock.locked() for lock in locks)
        assert all(lock.rvn != first[lock.name] for lock in locks)
        for lock in locks:
            await lock.release()
        held = time.monotonic() - start
        renewals = client.renewals
    check_counts(before, await asyncio.to_thread(calls, app), renewals, held)


def test_track_functions_is_settable_here() -> None:
    with psycopg.connect(tracked_dsn(unique("t"))) as conn:
        row = conn.execute("SHOW track_functions").fetchone()
        assert row == ("all",)
