"""Behind PgBouncer in transaction mode (Debian's 1.18, a pool of 4 server
connections): clients with ``pgbouncer=True`` send unprepared statements, take
turns on a lock, renew theirs, and see the server's errors as they are."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import pglock
from conftest import PgBouncer, unique

CLIENTS = 8
ROUNDS = 4


def test_clients_behind_pgbouncer_take_turns_and_renew(pgbouncer: PgBouncer) -> None:
    name = unique("bouncer")
    clients = [pglock.Client(pgbouncer.dsn(), lease=3.0, pgbouncer=True) for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def work(client: pglock.Client) -> None:
        try:
            for _ in range(ROUNDS):
                lock = client.acquire(name, timeout=60)
                count = lock.data_json() or 0
                lock.release(keep=True, data_json=count + 1)
        except BaseException as error:
            errors.append(error)

    try:
        # A lock held across several renewals, each on whichever server connection.
        held = clients[0].acquire(unique("bouncer-held"), lease=1.5)
        first = held.rvn
        threads = [threading.Thread(target=work, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert not any(thread.is_alive() for thread in threads)
        assert not errors, errors
        info = clients[1].get(name)
        assert info is not None and info.data_json() == CLIENTS * ROUNDS
        time.sleep(1.2)
        assert held.locked() and held.rvn != first
        held.release()
        with pytest.raises(pglock.InvalidArgument) as raised:
            clients[2].acquire("", blocking=False)
        assert raised.value.sqlstate == "22023"
    finally:
        for client in clients:
            client.close()


async def test_async_clients_behind_pgbouncer(pgbouncer: PgBouncer) -> None:
    name = unique("bouncer-async")
    clients = [pglock.AsyncClient(pgbouncer.dsn(), lease=3.0, pgbouncer=True) for _ in range(6)]

    async def work(client: pglock.AsyncClient) -> None:
        for _ in range(ROUNDS):
            lock = await client.acquire(name, timeout=60)
            count = lock.data_json() or 0
            await lock.release(keep=True, data_json=count + 1)

    try:
        async with asyncio.timeout(90):
            await asyncio.gather(*(work(client) for client in clients))
        info = await clients[0].get(name)
        assert info is not None and info.data_json() == 6 * ROUNDS
    finally:
        for client in clients:
            await client.close()
