"""The rest of the API, briefly: pools and given connections as sources,
semaphores, the decorator, leader election, and what close() leaves behind."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import pglock
from conftest import dsn_for, unique, wait_for


def pglock_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pglock-")]


def test_a_pool_and_a_given_connection_serve_as_sources(dsn: str) -> None:
    with (
        ConnectionPool(dsn, min_size=2, max_size=4, open=True) as pool,
        pglock.Client(pool, lease=1.5) as client,
        client.lock(unique("pool")) as lock,
    ):
        first = lock.rvn
        wait_for("a renewal", lambda: lock.rvn != first, limit=5)
    with psycopg.connect(dsn, autocommit=True) as conn, pglock.Client(conn, lease=1.5) as client:
        assert "connection" in repr(client)
        name = unique("given")
        lock = client.acquire(name)
        other = pglock.Client(dsn)
        with pytest.raises(pglock.NotAcquired):
            other.acquire(name, timeout=0.3)
        other.close()
        first = lock.rvn
        wait_for("a renewal", lambda: lock.rvn != first, limit=5)
        lock.release()
    with psycopg.connect(dsn) as conn, pytest.raises(ValueError, match="autocommit"):
        pglock.Client(conn)


async def test_an_async_pool_serves_as_a_source(dsn: str) -> None:
    async with (
        AsyncConnectionPool(dsn, min_size=2, max_size=4, open=False) as pool,
        pglock.AsyncClient(pool, lease=1.5) as client,
        client.lock(unique("apool")) as lock,
    ):
        first = lock.rvn
        async with asyncio.timeout(5):
            while lock.rvn == first:
                await asyncio.sleep(0.02)


def test_a_semaphore_admits_as_many_holders_as_slots(dsn: str) -> None:
    name = unique("sem")
    clients = [pglock.Client(dsn, lease=5) for _ in range(4)]
    try:
        held = [client.acquire_slot(name, 3, blocking=False) for client in clients[:3]]
        assert sorted(lock.name for lock in held) == [f"{name}#1", f"{name}#2", f"{name}#3"]
        with pytest.raises(pglock.NotAcquired):
            clients[3].acquire_slot(name, 3, blocking=False)
        got: list[pglock.Lock] = []
        waiter = threading.Thread(target=lambda: got.append(clients[3].acquire_slot(name, 3)))
        waiter.start()
        time.sleep(0.2)
        assert not got
        held[1].release()
        waiter.join(30)
        assert got and got[0].name == held[1].name if held[1].rvn else got
        got[0].release()
        for lock in (held[0], held[2]):
            lock.release()
        with clients[0].semaphore(name, 3) as slot:
            assert slot.name.startswith(f"{name}#")
    finally:
        for client in clients:
            client.close()


def test_the_decorator_waits_or_skips(dsn: str) -> None:
    name = unique("decorated")
    with pglock.Client(dsn, lease=5) as client, pglock.Client(dsn, lease=5) as other:
        runs: list[str] = []

        @client.synchronized(name, blocking=False)
        def skipping() -> str:
            runs.append("skipping")
            return "ran"

        @client.synchronized(name, timeout=10)
        def waiting() -> str:
            runs.append("waiting")
            return "ran"

        assert skipping() == "ran"
        held = other.acquire(name)
        assert skipping() is None
        threading.Timer(0.3, held.release).start()
        assert waiting() == "ran"
        assert runs == ["skipping", "waiting"]
        assert skipping.__name__ == "skipping"


async def test_the_async_decorator_skips_when_held(dsn: str) -> None:
    name = unique("adecorated")
    async with pglock.AsyncClient(dsn) as client, pglock.AsyncClient(dsn) as other:

        @client.synchronized(name, blocking=False)
        async def job() -> int:
            return 1

        assert await job() == 1
        held = await other.acquire(name)
        assert await job() is None
        await held.release()


def test_leader_election_campaign_observe_resign(dsn: str) -> None:
    name = unique("leader")
    with (
        pglock.Client(dsn, lease=2) as one,
        pglock.Client(dsn, lease=2) as two,
        pglock.Client(dsn, poll_interval=0.05) as observer,
    ):
        first, second = one.election(name), two.election(name)
        seen: list[str | None] = []
        stop = threading.Event()

        def observe() -> None:
            for leader in observer.election(name).observe(timeout=30, stop=stop):
                seen.append(None if leader is None else leader.owner)

        watcher = threading.Thread(target=observe)
        watcher.start()
        try:
            wait_for("the first observation", lambda: seen)
            first.campaign(data_json={"url": "http://one"})
            assert first.is_leader()
            info = second.leader()
            assert info is not None and info.owner == one.owner
            assert info.data_json() == {"url": "http://one"}
            wait_for("the first leader observed", lambda: one.owner in seen)
            campaign = threading.Thread(target=lambda: second.campaign(timeout=20))
            campaign.start()
            time.sleep(0.2)
            assert not second.is_leader()
            first.resign()
            campaign.join(30)
            assert second.is_leader() and not first.is_leader()
            wait_for("the second leader observed", lambda: seen[-1] == two.owner)
            assert seen[:2] == [None, one.owner]
            second.resign()
        finally:
            stop.set()
            watcher.join(30)


async def test_async_leader_election(dsn: str) -> None:
    name = unique("aleader")
    async with pglock.AsyncClient(dsn, lease=2) as one:
        election = one.election(name)
        observed = election.observe(timeout=20)
        assert await anext(observed) is None
        await election.campaign()
        leader = await anext(observed)
        assert leader is not None and leader.owner == one.owner
        await election.resign()
        assert await anext(observed) is None
        await observed.aclose()


def test_close_releases_what_is_held_and_leaves_no_thread(dsn: str) -> None:
    name = unique("closing")
    lost: list[pglock.LockLost] = []
    client = pglock.Client(dsn, lease=2)
    lock = client.acquire(name, on_lost=lost.append)
    assert client.renewing and pglock_threads()
    assert "held" in repr(lock) and client.owner in repr(client)
    client.close()
    assert not client.renewing
    assert not pglock_threads()
    assert lock.lost.is_set() and lock.lost_reason is pglock.LostReason.CLIENT_CLOSED
    assert lost and lost[0].reason is pglock.LostReason.CLIENT_CLOSED
    with pglock.Client(dsn) as other:
        assert other.get(name) is None, "released at close"
    with pytest.raises(pglock.LockLost):
        lock.release()
    with pytest.raises(pglock.PglockError, match="closed"):
        client.acquire(name)


async def test_async_close_leaves_no_task(dsn: str) -> None:
    client = pglock.AsyncClient(dsn_for(), lease=2)
    lock = await client.acquire(unique("aclosing"))
    assert client.renewing
    await client.close()
    assert not client.renewing
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not any(name.startswith("pglock-") for name in names)
    assert lock.lost.is_set()


def test_a_lock_object_is_shared_by_threads_like_threading_lock(dsn: str) -> None:
    with pglock.Client(dsn, lease=5) as client:
        lock = client.lock(unique("shared"))
        assert lock.acquire()
        assert not lock.acquire(timeout=0.1), "a second acquire waits, as on threading.Lock"
        assert not lock.acquire(blocking=False)
        lock.release()
        with pytest.raises(pglock.NotHeld):
            lock.release()
        with lock:
            assert lock.locked()
        assert not lock.locked()
