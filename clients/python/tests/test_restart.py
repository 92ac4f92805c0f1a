"""A held lock survives a restart of its server: the client opens new connections
(with backoff) and renews the lock over them before its deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

import pglock
from conftest import Server, unique, wait_for

LEASE = 8.0


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    own = Server("restart", 55501)
    try:
        yield own.create()
    finally:
        own.stop()


def test_a_held_lock_survives_a_server_restart(server: Server) -> None:
    with pglock.Client(server.dsn(), lease=LEASE) as client:
        lock = client.acquire(unique("restart"))
        acquired = lock.rvn
        wait_for("a first renewal", lambda: lock.rvn != acquired, limit=LEASE)
        before = lock.rvn
        server.restart()
        restarted = time.monotonic()
        wait_for("a renewal on the restarted server", lambda: lock.rvn != before, limit=LEASE)
        assert lock.locked() and not lock.lost.is_set()
        assert time.monotonic() - restarted < LEASE
        assert client.reconnects >= 1
        info = client.get(lock.name)
        assert info is not None and info.owner == client.owner and info.rvn == lock.rvn
        lock.release()


async def test_the_async_client_survives_a_server_restart(server: Server) -> None:
    async with pglock.AsyncClient(server.dsn(), lease=LEASE) as client:
        lock = await client.acquire(unique("restart-async"))
        acquired = lock.rvn
        async with asyncio.timeout(LEASE):
            while lock.rvn == acquired:
                await asyncio.sleep(0.05)
        before = lock.rvn
        await asyncio.to_thread(server.restart)
        async with asyncio.timeout(LEASE):
            while lock.rvn == before:
                await asyncio.sleep(0.05)
        assert lock.locked()
        assert client.reconnects >= 1
        await lock.release()
