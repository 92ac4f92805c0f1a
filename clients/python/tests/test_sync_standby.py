"""A renewal cancelled at its time limit is not taken as a renewal, whatever the
server answers: a commit that waits for a synchronous standby, cancelled,
commits on the primary alone and answers success (with a WARNING), and a
failover to the standby loses it. A client that believed it would count its
lease from a write the cluster no longer has, and hold on past the moment a
rival may take over (found by tests/partitions/: the leader cut off from its
standbys, the Python holder on its side).

Here every commit of the module's own server waits for a standby that does not
exist, from the moment the lock is held: the renewal that follows is cancelled
at its limit, its answer (renewed, with a new RVN) is thrown away, the retry
finds the lock not renewed at the RVN it knows, and the lock is lost then."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

import pglock
from conftest import Server, unique, wait_for

LEASE, PERIOD = 4.0, 1.0  # margin = min(period, lease / 4) = 1 s: lost 3 s after a renewal


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    own = Server("sync-standby", 55503)
    try:
        yield own.create()
    finally:
        own.stop()


def commits_wait_for_a_standby(server: Server, wait: bool) -> None:
    value = "'nobody'" if wait else "''"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = {value}")
        conn.execute("SELECT pg_reload_conf()")


def test_a_renewal_cancelled_while_its_commit_waits_is_not_believed(server: Server) -> None:
    try:
        with pglock.Client(server.dsn(), lease=LEASE, period=PERIOD) as client:
            lock = client.acquire(unique("sync-standby"))
            acquired = lock.rvn
            wait_for("a first renewal", lambda: lock.rvn != acquired, limit=LEASE)
            known, renewed_by = lock.rvn, time.monotonic()
            commits_wait_for_a_standby(server, True)
            lost = lock.lost.wait(LEASE)
            lost_after = time.monotonic() - renewed_by
            commits_wait_for_a_standby(server, False)
            assert lost, "the lock was never reported lost"
            assert lock.rvn == known, "an RVN from a cancelled renewal was taken"
            # Lost by the rule: by the last real renewal + lease - margin.
            assert lost_after < LEASE - PERIOD + 0.5
    finally:
        commits_wait_for_a_standby(server, False)


async def test_the_async_client_does_not_believe_a_cancelled_renewal(server: Server) -> None:
    try:
        async with pglock.AsyncClient(server.dsn(), lease=LEASE, period=PERIOD) as client:
            lock = await client.acquire(unique("sync-standby-async"))
            acquired = lock.rvn
            async with asyncio.timeout(LEASE):
                while lock.rvn == acquired:
                    await asyncio.sleep(0.02)
            known, renewed_by = lock.rvn, time.monotonic()
            await asyncio.to_thread(commits_wait_for_a_standby, server, True)
            lost = await lock.lost.wait(LEASE)
            lost_after = time.monotonic() - renewed_by
            await asyncio.to_thread(commits_wait_for_a_standby, server, False)
            assert lost, "the lock was never reported lost"
            assert lock.rvn == known, "an RVN from a cancelled renewal was taken"
            assert lost_after < LEASE - PERIOD + 0.5
    finally:
        commits_wait_for_a_standby(server, False)
