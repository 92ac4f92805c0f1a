"""Mutual exclusion: concurrent holders increment a counter kept in the lock's data,
each reading it at acquire and writing it back at release (``keep=True``). Any
overlap would lose an increment, so the total is exact only if no two held the
lock at once."""

from __future__ import annotations

import asyncio
import threading

import pglock
from conftest import unique

WORKERS = 16
ROUNDS = 5
LEASE = 2.0


def test_sixteen_threads_increment_a_counter_in_the_locks_data(dsn: str) -> None:
    name = unique("threads")
    # Four clients, four threads each: threads share a client's connections and renewer.
    clients = [pglock.Client(dsn, lease=LEASE) for _ in range(4)]
    inside = 0
    most_inside = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work(client: pglock.Client) -> None:
        nonlocal inside, most_inside
        try:
            for _ in range(ROUNDS):
                lock = client.acquire(name, timeout=60)
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                count = lock.data_json() or 0
                with guard:
                    inside -= 1
                lock.release(keep=True, data_json=count + 1)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=(clients[i % 4],), name=f"worker-{i}")
        for i in range(WORKERS)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert not any(thread.is_alive() for thread in threads), "a worker hung"
        assert not errors, errors
        info = clients[0].get(name)
        assert info is not None and info.released
        assert info.data_json() == WORKERS * ROUNDS
        assert most_inside == 1
    finally:
        for client in clients:
            client.close()


async def test_sixteen_tasks_increment_a_counter_in_the_locks_data(dsn: str) -> None:
    name = unique("tasks")
    clients = [pglock.AsyncClient(dsn, lease=LEASE) for _ in range(4)]
    inside = 0
    most_inside = 0

    async def work(client: pglock.AsyncClient) -> None:
        nonlocal inside, most_inside
        for _ in range(ROUNDS):
            lock = await client.acquire(name, timeout=60)
            inside += 1
            most_inside = max(most_inside, inside)
            count = lock.data_json() or 0
            await asyncio.sleep(0)  # let the others run while held
            inside -= 1
            await lock.release(keep=True, data_json=count + 1)

    try:
        async with asyncio.timeout(90):
            await asyncio.gather(*(work(clients[i % 4]) for i in range(WORKERS)))
        info = await clients[0].get(name)
        assert info is not None and info.released
        assert info.data_json() == WORKERS * ROUNDS
        assert most_inside == 1
    finally:
        for client in clients:
            await client.close()
