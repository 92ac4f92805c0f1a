"""``lock.fence(conn)`` runs ``pglock_fence`` in the caller's own transaction: its
writes commit while the lock is held, and roll back when the lock was taken
over, with :class:`LockLost` carrying the server's 55000."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

import pglock
from conftest import dsn_for, superuser, unique


@pytest.fixture
def table() -> Iterator[str]:
    name = unique("fenced").replace("-", "_")
    with superuser() as conn:
        conn.execute(f"CREATE TABLE {name} (step integer, token bigint)")
    try:
        yield name
    finally:
        with superuser() as conn:
            conn.execute(f"DROP TABLE {name}")


def take_over(name: str, rvn: int) -> None:
    """Another owner of the same role takes the lock over at ``rvn`` (owners within
    a role cooperate: the RVN is enough), as after a stall past the lease."""
    with superuser() as conn:
        row = conn.execute(
            "SELECT acquired FROM pglock_acquire(%s, 'rival', observed_rvn => %s)", (name, rvn)
        ).fetchone()
        assert row == (True,)


def rows(table: str) -> list[tuple[int, int]]:
    with superuser() as conn:
        return conn.execute(f"SELECT step, token FROM {table} ORDER BY step").fetchall()


def test_the_fence_commits_while_held_and_rolls_back_after_a_takeover(table: str) -> None:
    name = unique("fence")
    with (
        pglock.Client(dsn_for(), lease=30) as client,
        psycopg.connect(dsn_for()) as work,
    ):
        lock = client.acquire(name)
        with work.transaction():
            token = lock.fence(work)
            work.execute(f"INSERT INTO {table} VALUES (1, %s)", (token,))
        assert rows(table) == [(1, token)]

        take_over(name, token)
        with pytest.raises(pglock.LockLost) as raised, work.transaction():
            work.execute(f"INSERT INTO {table} VALUES (2, %s)", (token,))
            lock.fence(work)
        assert raised.value.sqlstate == "55000"
        assert raised.value.reason is pglock.LostReason.NOT_HELD
        assert raised.value.detail is not None and "rival" in raised.value.detail
        assert rows(table) == [(1, token)], "the transaction's write rolled back"
        assert lock.lost.is_set() and lock.lost_reason is pglock.LostReason.NOT_HELD
        with pytest.raises(pglock.LockLost):
            lock.release()


def test_the_fence_takes_a_db_api_cursor(table: str) -> None:
    name = unique("fence-cursor")
    with pglock.Client(dsn_for(), lease=30) as client, psycopg.connect(dsn_for()) as work:
        lock = client.acquire(name)
        cursor = work.cursor()  # what Django's connection.cursor() wraps
        token = lock.fence(cursor)
        cursor.execute(f"INSERT INTO {table} VALUES (1, %s)", (token,))
        work.commit()
        take_over(name, token)
        cursor.execute(f"INSERT INTO {table} VALUES (2, %s)", (token,))
        with pytest.raises(pglock.LockLost):
            lock.fence(cursor)
        work.rollback()
        assert rows(table) == [(1, token)]


async def test_the_async_fence_rolls_back_after_a_takeover(table: str) -> None:
    name = unique("fence-async")
    async with (
        pglock.AsyncClient(dsn_for(), lease=30) as client,
        await psycopg.AsyncConnection.connect(dsn_for()) as work,
    ):
        lock = await client.acquire(name)
        async with work.transaction():
            token = await lock.fence(work)
            await work.execute(f"INSERT INTO {table} VALUES (1, %s)", (token,))
        take_over(name, token)
        with pytest.raises(pglock.LockLost) as raised:
            async with work.transaction():
                await work.execute(f"INSERT INTO {table} VALUES (2, %s)", (token,))
                await lock.fence(work)
        assert raised.value.sqlstate == "55000"
        assert rows(table) == [(1, token)]
