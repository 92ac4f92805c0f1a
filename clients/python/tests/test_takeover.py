"""A holder killed with SIGKILL is taken over, and only after its lease: the
takeover must find the dead holder's RVN standing still for a whole lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pglock
from conftest import dsn_for, unique

LEASE = 3.0

HOLDER = textwrap.dedent(
    """
    import sys, time, pglock
    client = pglock.Client(sys.argv[1], lease=float(sys.argv[3]))
    lock = client.acquire(sys.argv[2], blocking=False)
    print(lock.rvn, flush=True)
    time.sleep(120)
    """
)


def start_holder(name: str) -> tuple[subprocess.Popen[str], int, float]:
    """A process holding ``name``; returns it, its RVN, and a time before its acquire."""
    before = time.monotonic()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn_for(), name, str(LEASE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if not line:
        holder.kill()
        pytest.fail("the holder process did not acquire")
    return holder, int(line), before


def kill(holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)


def test_a_killed_holder_is_taken_over_after_its_lease(dsn: str) -> None:
    name = unique("killed")
    holder, rvn, before = start_holder(name)
    try:
        kill(holder)
        with pglock.Client(dsn, lease=LEASE) as client:
            with pytest.raises(pglock.NotAcquired) as refused:
                client.acquire(name, blocking=False)
            assert refused.value.holder is not None
            dead_rvn = refused.value.holder.rvn
            assert dead_rvn is not None and dead_rvn >= rvn
            lock = client.acquire(name, timeout=30)
            took = time.monotonic()
            # Never before the dead holder's lease, counted from before its acquire.
            assert took - before >= LEASE
            assert lock.rvn is not None and lock.rvn > dead_rvn
            info = client.get(name)
            assert info is not None and info.owner == client.owner
            lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()


async def test_the_async_client_takes_over_a_killed_holder_after_its_lease(dsn: str) -> None:
    name = unique("killed-async")
    holder, rvn, before = start_holder(name)
    try:
        kill(holder)
        async with pglock.AsyncClient(dsn, lease=LEASE) as client:
            assert not await client.lock(name, blocking=False).acquire()
            async with asyncio.timeout(30):
                lock = await client.acquire(name, timeout=30)
            assert time.monotonic() - before >= LEASE
            assert lock.rvn is not None and lock.rvn > rvn
            await lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
