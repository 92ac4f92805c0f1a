"""A lock whose renewals cannot get through is signalled lost before a rival can
take it over. The holder's server backends are stopped (SIGSTOP), so its
renewal hangs; its signal, its callback and a rival's takeover are timed on one
monotonic clock."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import pglock
from conftest import backends, dsn_for, unique, wait_for

LEASE = 2.0


@contextmanager
def frozen(application_name: str) -> Iterator[list[int]]:
    """Stops every server backend of ``application_name``; continues them at the end."""
    pids = wait_for("the holder's backends", lambda: backends(application_name))
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_a_lost_lock_is_signalled_before_a_rival_can_take_it() -> None:
    app = unique("frozen")
    name = unique("lost")
    lost_at: list[float] = []
    callback_at: list[tuple[float, pglock.LockLost]] = []
    holder = pglock.Client(dsn_for(application_name=app), lease=LEASE)
    rival = pglock.Client(dsn_for(), lease=LEASE)
    try:
        lock = holder.acquire(
            name, on_lost=lambda error: callback_at.append((time.monotonic(), error))
        )
        renewed_rvn = lock.rvn
        wait_for("a renewal", lambda: lock.rvn != renewed_rvn, limit=10)

        def watch() -> None:
            if lock.lost.wait(30):
                lost_at.append(time.monotonic())

        watcher = threading.Thread(target=watch)
        watcher.start()
        with frozen(app):
            taken = rival.acquire(name, timeout=30)
            took = time.monotonic()
            watcher.join(30)
            assert lost_at, "the loss was never signalled"
            assert lost_at[0] < took
            # The callback too, from the renewer's side, although its call hangs.
            assert callback_at and callback_at[0][0] < took
            assert callback_at[0][1].reason is pglock.LostReason.HEARTBEATS_FAILED
            assert lock.lost_reason is pglock.LostReason.HEARTBEATS_FAILED
            assert not lock.locked()
            assert taken.rvn is not None and lock.rvn is not None and taken.rvn > lock.rvn
        with pytest.raises(pglock.LockLost) as raised:
            lock.release()
        assert raised.value.reason is pglock.LostReason.HEARTBEATS_FAILED
        taken.release()
    finally:
        holder.close()
        rival.close()


async def test_the_async_client_signals_the_loss_before_a_rival_takes_it() -> None:
    app = unique("frozen-async")
    name = unique("lost-async")
    callback_at: list[float] = []
    holder = pglock.AsyncClient(dsn_for(application_name=app), lease=LEASE)
    rival = pglock.AsyncClient(dsn_for(), lease=LEASE)
    try:
        lock = await holder.acquire(name, on_lost=lambda _: callback_at.append(time.monotonic()))
        first = lock.rvn
        async with asyncio.timeout(10):
            while lock.rvn == first:
                await asyncio.sleep(0.02)

        async def lost() -> float:
            assert await lock.lost.wait(30)
            return time.monotonic()

        watcher = asyncio.create_task(lost())
        with frozen(app):
            async with asyncio.timeout(30):
                taken = await rival.acquire(name, timeout=30)
            took = time.monotonic()
            assert watcher.done(), "the loss was not signalled before the takeover"
            assert await watcher < took
            assert callback_at and callback_at[0] < took
            assert lock.lost_reason is pglock.LostReason.HEARTBEATS_FAILED
        await taken.release()
    finally:
        await holder.close()
        await rival.close()
