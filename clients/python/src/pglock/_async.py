"""The client for asyncio: :class:`AsyncClient`, :class:`AsyncLock`, :class:`AsyncElection`.

The same API as the thread client (:mod:`._sync`), awaited: every pglock call
runs in autocommit, one atomic step each, and one task per client, its
renewer, renews every lock the client holds with one ``pglock_heartbeat_many``
call per period; it runs while the client holds a lock and ends with the last
one (and at ``close()``). Each renewal call is bounded by ``asyncio.timeout``:
psycopg cancels a statement whose task is cancelled in the server too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

import psycopg
from psycopg import pq

from . import _sql
from ._connections import Backoff, Options, default_owner, own_conninfo
from ._errors import (
    ConnectionFailed,
    InvalidArgument,
    LockLost,
    NotAcquired,
    NotHeld,
    PglockError,
    describe,
    from_psycopg,
    is_connection_error,
)
from ._observe import Observations
from ._registry import Held, Idle, LostCallback, Member, Registry, Renew, Sleep
from ._sync import LINGER, _find_psycopg_error, _fire, _leader_changed, _leading, _terminated
from ._timing import Timing
from ._types import (
    UNSET,
    LockInfo,
    LostReason,
    Seconds,
    _Unset,
    decode_json,
    encode_data,
    seconds,
)

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

__all__ = ["AsyncClient", "AsyncElection", "AsyncLock", "AsyncLostSignal"]

logger = logging.getLogger("pglock")

P = ParamSpec("P")
R = TypeVar("R")
AsyncConnection: TypeAlias = "psycopg.AsyncConnection[Any]"
AsyncSource: TypeAlias = "str | psycopg.AsyncConnection[Any] | AsyncConnectionPool[Any]"


# --------------------------------------------------------------------------
# Connections


async def _run(
    conn: AsyncConnection, query: str, params: tuple[Any, ...], prepare: bool | None
) -> list[Any]:
    """Runs one pglock statement by itself, committed; every row."""
    try:
        cursor = await conn.execute(query, params, prepare=prepare)
        rows = await cursor.fetchall()
        if not conn.autocommit:
            await conn.commit()
    except psycopg.Error:
        if not conn.autocommit and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
        raise
    return rows


async def _cancel(conn: AsyncConnection) -> None:
    try:
        if hasattr(conn, "cancel_safe"):
            await conn.cancel_safe(timeout=5.0)
        else:  # psycopg 3.1
            conn.cancel()
    except Exception as error:  # noqa: BLE001 - a cancel is best effort
        logger.debug("cancel failed: %s", error)


class _AsyncConnections:
    """Where a client's calls get a connection: its own, a pool's, or the caller's one."""

    def __init__(self) -> None:
        self._in_use: set[AsyncConnection] = set()

    @contextlib.asynccontextmanager
    async def connection(
        self, timeout: float | None, renewal: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection for one call, given back afterwards."""
        conn = await self._get(timeout, renewal)
        self._in_use.add(conn)
        broken = False
        try:
            yield conn
        except psycopg.Error as error:
            broken = is_connection_error(error)
            raise
        except asyncio.CancelledError:
            broken = conn.info.transaction_status != pq.TransactionStatus.IDLE
            raise
        finally:
            self._in_use.discard(conn)
            await self._put(conn, renewal, broken)

    async def cancel_all(self) -> None:
        """Cancels every call in flight (at close, to end waits in the server)."""
        for conn in list(self._in_use):
            await _cancel(conn)

    async def close(self) -> None:
        """Closes what the client opened."""

    @property
    def reconnects(self) -> int:
        """How many connections were opened to replace broken ones."""
        return 0

    async def _get(self, timeout: float | None, renewal: bool) -> AsyncConnection:
        raise NotImplementedError

    async def _put(self, conn: AsyncConnection, renewal: bool, broken: bool) -> None:
        raise NotImplementedError


class _AsyncOwnConnections(_AsyncConnections):
    """Connections the client opens from a connection string, and opens again when
    they break (with backoff): one kept for the renewer, others for calls."""

    MAX_IDLE = 4

    def __init__(self, conninfo: str, prepare: bool | None, backoff_cap: float) -> None:
        super().__init__()
        self._conninfo = own_conninfo(conninfo)
        self._prepare_threshold = None if prepare is False else 5
        self._idle: list[AsyncConnection] = []
        self._renewal: AsyncConnection | None = None
        self._attempts = asyncio.Lock()
        self._backoff = Backoff(cap=backoff_cap)
        self._replaced = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<own connections: {len(self._idle)} idle, {len(self._in_use)} in use>"

    @property
    def reconnects(self) -> int:
        return self._replaced

    async def _get(self, timeout: float | None, renewal: bool) -> AsyncConnection:
        if self._closed:
            raise PglockError("the client is closed")
        if renewal and self._renewal is not None:
            conn, self._renewal = self._renewal, None
            return conn
        if not renewal and self._idle:
            return self._idle.pop()
        async with self._attempts:
            wait = self._backoff.next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, prepare_threshold=self._prepare_threshold
                )
            except psycopg.Error as error:
                self._backoff.failed(time.monotonic())
                logger.info("connecting failed: %s", describe(error))
                raise ConnectionFailed(describe(error), error) from error
            self._backoff.succeeded()
            return conn

    async def _put(self, conn: AsyncConnection, renewal: bool, broken: bool) -> None:
        usable = (
            not broken
            and not conn.closed
            and conn.info.transaction_status == pq.TransactionStatus.IDLE
        )
        if usable and not self._closed:
            if renewal and self._renewal is None:
                self._renewal = conn
                return
            if not renewal and len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        if not usable:
            self._replaced += 1
        await conn.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        if self._renewal is not None:
            idle.append(self._renewal)
            self._renewal = None
        for conn in idle:
            await conn.close()


class _AsyncPoolConnections(_AsyncConnections):
    """Connections borrowed from the caller's ``psycopg_pool.AsyncConnectionPool``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        super().__init__()
        self._pool = pool

    def __repr__(self) -> str:
        return f"<pool {self._pool.name!r}>"

    async def _get(self, timeout: float | None, renewal: bool) -> AsyncConnection:
        try:
            conn: AsyncConnection = await self._pool.getconn(timeout=timeout)
        except Exception as error:
            raise ConnectionFailed(f"no connection from the pool: {error}") from error
        return conn

    async def _put(self, conn: AsyncConnection, renewal: bool, broken: bool) -> None:
        await self._pool.putconn(conn)


class _AsyncGivenConnection(_AsyncConnections):
    """The caller's one connection, for every call: psycopg lets one statement run at
    a time, so waits in the server are kept short to let renewals through."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self._conn = conn

    def __repr__(self) -> str:
        return f"<connection {self._conn.info.dsn!r}>"

    async def _get(self, timeout: float | None, renewal: bool) -> AsyncConnection:
        return self._conn

    async def _put(self, conn: AsyncConnection, renewal: bool, broken: bool) -> None:
        pass

    async def cancel_all(self) -> None:
        # Shared with the renewer: a cancel could hit a renewal. Waits are short.
        pass


def _async_sources(source: AsyncSource, prepare: bool | None, backoff: float) -> _AsyncConnections:
    if isinstance(source, str):
        return _AsyncOwnConnections(source, prepare, backoff)
    if isinstance(source, psycopg.AsyncConnection):
        if not source.autocommit:
            raise ValueError("the connection must be in autocommit mode")
        return _AsyncGivenConnection(source)
    try:
        from psycopg_pool import AsyncConnectionPool
    except ImportError:  # the optional extra is not installed
        pass
    else:
        if isinstance(source, AsyncConnectionPool):
            return _AsyncPoolConnections(source)
    raise TypeError(
        "an AsyncClient is made from a connection string, a psycopg.AsyncConnection or a "
        f"psycopg_pool.AsyncConnectionPool, not {type(source).__name__}"
    )


# --------------------------------------------------------------------------
# The renewer


class _AsyncRenewer:
    """One task per client renewing every lock the client holds; it starts with the
    first lock and ends a second after the last one, or at close."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._registry = Registry()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._closed = False
        self.calls = 0

    def __repr__(self) -> str:
        state = "running" if self.running else "idle"
        return f"<renewer {len(self._registry.entries)} locks, {state}>"

    @property
    def running(self) -> bool:
        """Whether the renewer's task runs."""
        return self._task is not None and not self._task.done()

    def register(self, held: Held, sent: float) -> int:
        """Starts renewing ``held``, acquired by a request sent at ``sent``."""
        if self._closed:
            raise PglockError("the client is closed")
        key = self._registry.insert(held, sent)
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"pglock-renewer-{self._client.owner}"
            )
        self._wake.set()
        return key

    async def stop(self, key: int, held: Held) -> None:
        """Stops renewing ``held``; waits for a call in flight that includes it."""
        self._registry.remove(key)
        self._wake.set()
        async with self._changed:
            await self._changed.wait_for(lambda: not held.in_call)

    @contextlib.asynccontextmanager
    async def fencing(self, held: Held) -> AsyncIterator[None]:
        """Keeps ``held`` out of renewals while its fence is sent."""
        async with self._changed:
            await self._changed.wait_for(lambda: not held.in_call)
            held.fencing += 1
        try:
            yield
        finally:
            held.fencing -= 1
            self._wake.set()

    async def close(self) -> list[tuple[int, Held]]:
        """Stops the task; returns the locks still registered."""
        self._closed = True
        self._wake.set()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left = list(self._registry.entries.items())
        self._registry.entries.clear()
        return [(key, entry.held) for key, entry in left]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(self) -> None:
        try:
            await self._loop()
        except BaseException as error:
            if not isinstance(error, asyncio.CancelledError):
                logger.exception("the renewer stopped")
            left = [entry.held for entry in self._registry.entries.values()]
            self._registry.entries.clear()
            for held in left:
                if held.lose(LostReason.HEARTBEATS_FAILED, "the client's renewer stopped"):
                    _fire(held)
            if isinstance(error, asyncio.CancelledError):
                raise
        finally:
            for entry in self._registry.entries.values():
                entry.held.in_call = False
            if self._task is asyncio.current_task():
                self._task = None
            with contextlib.suppress(BaseException):
                await self._notify()

    async def _loop(self) -> None:
        idle_until: float | None = None
        while not self._closed:
            now = time.monotonic()
            expired = self._registry.expire(now)
            for held in expired:
                _fire(held)
            plan = self._registry.plan(now)
            if isinstance(plan, Idle):
                idle_until = idle_until or now + LINGER
                if now >= idle_until:
                    return
                plan = Sleep(idle_until)
            else:
                idle_until = None
            if isinstance(plan, Sleep):
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(plan.until - now, 0.0)):
                        await self._wake.wait()
                continue
            assert isinstance(plan, Renew)
            await self._renew(plan.members)

    async def _renew(self, members: list[Member]) -> None:
        client = self._client
        sent = time.monotonic()
        period = min(m.held.timing.period for m in members)
        limit = max(min(sent + period, max(m.lost_at for m in members)) - sent, 0.001)
        names = [m.held.name for m in members]
        rvns = [m.rvn for m in members]
        outcome: list[tuple[str, int | None, bool]] | str

        async def call() -> list[Any]:
            async with asyncio.timeout(limit):
                async with client._connections.connection(limit, renewal=True) as conn:
                    return await _run(
                        conn, _sql.HEARTBEAT_MANY, (client.owner, names, rvns), client._prepare
                    )

        task = asyncio.get_running_loop().create_task(call(), name="pglock-renewal")
        try:
            # Deadlines keep their time while the call is out: a lock whose
            # deadline comes first is lost then, its callback on time.
            while not task.done():
                deadline = self._registry.next_deadline()
                wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                await asyncio.wait({task}, timeout=None if wait is None else wait + 0.0005)
                for held in self._registry.expire(time.monotonic()):
                    _fire(held)
            rows = task.result()
            outcome = [(row[0], row[1], row[2]) for row in rows]
            self.calls += 1
        except TimeoutError:
            outcome = f"no answer within {limit:.3g} s"
            logger.warning("renewing %d locks failed (retrying): %s", len(members), outcome)
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - every failure of the call is retried
            outcome = describe(error) if isinstance(error, psycopg.Error) else str(error)
            logger.warning("renewing %d locks failed (retrying): %s", len(members), outcome)
        finally:
            for member in members:
                member.held.in_call = False
        now = time.monotonic()
        refused = self._registry.settle(members, sent, outcome, now)
        expired = self._registry.expire(now)
        await self._notify()
        for member in refused:
            logger.warning("lock %r lost: not renewed by the server", member.held.name)
            await self._why_not_held(member)
            _fire(member.held)
        for held in expired:
            _fire(held)

    async def _why_not_held(self, member: Member) -> None:
        try:
            async with asyncio.timeout(member.held.timing.retry):
                info = await self._client.get(member.held.name)
        except (PglockError, TimeoutError):
            return
        ours = info is not None and (info.owner, info.rvn) == (member.held.owner, member.rvn)
        if ours and info is not None and not info.released:
            member.held.narrow_to_other_role()


# --------------------------------------------------------------------------
# The loss signal


class AsyncLostSignal:
    """Set once a lock held is lost, or released: nothing may be done under it after.

    Like an :class:`asyncio.Event` you cannot set: :meth:`is_set` and ``await``
    :meth:`wait`. It reads the lock's deadline itself, so it is never late,
    whatever the renewer is doing.
    """

    def __init__(self, held: Held | None) -> None:
        self._held = held
        self._event = asyncio.Event()
        if held is not None:
            loop = asyncio.get_running_loop()

            def wake() -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed
                    loop.call_soon_threadsafe(self._event.set)

            held.add_listener(wake)
        else:
            self._event.set()

    def __repr__(self) -> str:
        return f"<AsyncLostSignal {'set' if self.is_set() else 'not set'}>"

    def is_set(self) -> bool:
        """Whether the lock is over (lost or released)."""
        return self._held is None or self._held.check()

    async def wait(self, timeout: Seconds | None = None) -> bool:
        """Waits until the lock is over, at most ``timeout``; returns :meth:`is_set`."""
        end = None if timeout is None else time.monotonic() + seconds(timeout)
        while not self.is_set():
            now = time.monotonic()
            assert self._held is not None
            wake = self._held.deadline - now
            if end is not None:
                if now >= end:
                    return False
                wake = min(wake, end - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake, 0.0) + 0.0005):
                    await self._event.wait()
        return True


# --------------------------------------------------------------------------
# Locks


class AsyncLock:
    """A lock of the client, held or not, used like an :class:`asyncio.Lock`.

    Made by :meth:`AsyncClient.lock` (not held) or :meth:`AsyncClient.acquire`
    (held). ``await acquire()`` takes the lease in the server (tasks sharing the
    object take turns on it first), ``await release()`` gives it back, ``async
    with lock:`` does both and raises :class:`LockLost` at the end of the block
    if the lock was lost meanwhile. :attr:`lost` is set the moment it is lost.
    """

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        *,
        lease: Seconds | None,
        timeout: Seconds | None,
        blocking: bool,
        data: bytes | None,
        on_lost: LostCallback | None,
        slots: int | None = None,
    ) -> None:
        self._client = client
        self._requested = name
        self._lease = seconds(lease) if lease is not None else client.lease
        self._timeout = timeout
        self._blocking = blocking
        self._data = data
        self._on_lost = on_lost
        self._slots = slots
        self._mutex = asyncio.Lock()
        self._held: Held | None = None
        self._key = -1
        self._signal: AsyncLostSignal | None = None

    def __repr__(self) -> str:
        held = self._held
        if held is None:
            state = "not held"
        elif held.check():
            state = f"lost ({held.reason.value})" if held.reason else "released"
        else:
            state = f"held, rvn={held.rvn}"
        kind = f" slot of {self._requested!r}/{self._slots}" if self._slots else ""
        return f"<pglock.AsyncLock {self.name!r}{kind} owner={self._client.owner!r} {state}>"

    @property
    def name(self) -> str:
        """The lock's name (for a semaphore, the slot held, e.g. ``exports#2``)."""
        held = self._held
        return held.name if held is not None else self._requested

    @property
    def owner(self) -> str:
        """The owner label the lock is held under: the client's."""
        return self._client.owner

    @property
    def lease(self) -> float:
        """The lease, in seconds."""
        return self._lease

    @property
    def rvn(self) -> int | None:
        """The fencing token: the lock's latest RVN; ``None`` when not held."""
        held = self._held
        return None if held is None else held.rvn

    @property
    def data(self) -> bytes | None:
        """The lock's data when it was acquired."""
        held = self._held
        return None if held is None else held.data

    def data_json(self) -> Any:
        """:attr:`data` read as JSON."""
        return decode_json(self.data)

    @property
    def lost(self) -> AsyncLostSignal:
        """Set once the lock is lost or released (see :class:`AsyncLostSignal`)."""
        if self._signal is None:
            self._signal = AsyncLostSignal(None)
        return self._signal

    @property
    def lost_reason(self) -> LostReason | None:
        """Why the lock was lost; ``None`` while held, or when released normally."""
        held = self._held
        if held is None or not held.check():
            return None
        return held.reason

    def locked(self) -> bool:
        """Whether this object holds the lock now: acquired, not released, not lost."""
        held = self._held
        return held is not None and not held.check()

    async def acquire(
        self, blocking: bool | None = None, timeout: Seconds | _Unset | None = UNSET
    ) -> bool:
        """Takes the lock; ``True`` once held, ``False`` if it was not free in time."""
        try:
            await self._take(blocking, timeout)
        except NotAcquired:
            return False
        return True

    async def _take(self, blocking: bool | None, timeout: Seconds | _Unset | None) -> None:
        blocking = self._blocking if blocking is None else blocking
        limit = self._timeout if isinstance(timeout, _Unset) else timeout
        wait = None if limit is None else seconds(limit)
        start = time.monotonic()
        if not blocking and self._mutex.locked():
            raise NotAcquired(self._requested, None, None)
        try:
            async with asyncio.timeout(wait):
                await self._mutex.acquire()
        except TimeoutError:
            raise NotAcquired(self._requested, None, wait) from None
        left = None if wait is None else max(wait - (time.monotonic() - start), 0.0)
        try:
            held, key = await self._client._take(
                self._requested,
                self._lease,
                self._data,
                blocking,
                left,
                self._on_lost,
                self._slots,
            )
        except BaseException:
            self._mutex.release()
            raise
        self._held, self._key = held, key
        self._signal = AsyncLostSignal(held)

    async def release(
        self, keep: bool = False, data: bytes | None = None, *, data_json: Any = UNSET
    ) -> None:
        """Releases the lock (see :meth:`pglock.Lock.release`)."""
        held = self._held
        if held is None:
            raise NotHeld(f"lock {self._requested!r} is not held by this AsyncLock")
        encoded = encode_data(data, data_json)
        try:
            await self._client._release(held, self._key, keep, encoded)
        except InvalidArgument:
            if not held.check():
                # Refused before anything changed (e.g. data without keep): still held.
                self._key = self._client._renewer.register(held, held.renewed_at)
                raise
            self._forget()
            raise
        except BaseException:
            self._forget()
            raise
        self._forget()

    def _forget(self) -> None:
        self._held = None
        self._mutex.release()

    async def fence(self, conn: Any) -> int:
        """Runs ``pglock_fence`` on the caller's own ``psycopg.AsyncConnection`` (or
        async cursor), in its transaction (see :meth:`pglock.Lock.fence`)."""
        held = self._held
        if held is None:
            raise NotHeld(f"lock {self._requested!r} is not held by this AsyncLock")
        async with self._client._renewer.fencing(held):
            if held.check():
                raise held.error()
            rvn = held.rvn
            params = (held.name, held.owner, rvn)
            try:
                if isinstance(conn, psycopg.AsyncConnection):
                    cursor = await conn.execute(_sql.FENCE, params, prepare=self._client._prepare)
                    await cursor.fetchone()
                else:
                    await conn.execute(_sql.FENCE, params)
                    await conn.fetchone()
            except Exception as error:
                pg = _find_psycopg_error(error)
                if pg is not None and pg.sqlstate in ("55000", "42501"):
                    reason = (
                        LostReason.NOT_HELD
                        if pg.sqlstate == "55000"
                        else LostReason.HELD_BY_OTHER_ROLE
                    )
                    held.lose(reason, describe(pg))
                    _fire(held)
                    raise LockLost(held.name, reason, describe(pg), pg) from error
                if pg is not None and isinstance(error, psycopg.Error):
                    raise from_psycopg(pg) from error
                raise
        return rvn

    async def __aenter__(self) -> AsyncLock:
        await self._take(None, UNSET)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.release()


# --------------------------------------------------------------------------
# The client


class AsyncClient:
    """A pglock client for asyncio; the same options as :class:`pglock.Client`.

    ``source`` is a connection string, a ``psycopg.AsyncConnection`` in
    autocommit mode (used for every call, and by nothing else meanwhile) or a
    ``psycopg_pool.AsyncConnectionPool``. Make it inside the running loop, and
    close it there (``async with AsyncClient(...) as client:``).
    """

    def __init__(
        self,
        source: AsyncSource,
        *,
        owner: str | None = None,
        lease: Seconds = 20.0,
        period: Seconds | None = None,
        poll_interval: Seconds = 0.5,
        server_wait: Seconds | None = None,
        pgbouncer: bool = False,
    ) -> None:
        poll = seconds(poll_interval)
        prepare = False if pgbouncer else None
        self._connections = _async_sources(source, prepare, poll)
        if server_wait is None:
            if isinstance(self._connections, _AsyncGivenConnection):
                wait = poll
            else:
                wait = 0.1 if pgbouncer else 5.0
        else:
            wait = seconds(server_wait)
        self._options = Options(
            owner=owner if owner is not None else default_owner(),
            lease=seconds(lease),
            period=None if period is None else seconds(period),
            poll_interval=poll,
            server_wait=wait,
            prepare=prepare,
        )
        self._prepare = prepare
        self._seen = Observations()
        self._renewer = _AsyncRenewer(self)
        self._closed = False
        self._has_watch: bool | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else repr(self._renewer)
        return f"<pglock.AsyncClient owner={self.owner!r} via {self._connections!r} {state}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def owner(self) -> str:
        """The owner label of this client's locks."""
        return self._options.owner

    @property
    def lease(self) -> float:
        """The default lease, in seconds."""
        return self._options.lease

    @property
    def reconnects(self) -> int:
        """How many broken connections the client replaced."""
        return self._connections.reconnects

    @property
    def renewals(self) -> int:
        """How many ``pglock_heartbeat_many`` calls succeeded."""
        return self._renewer.calls

    @property
    def renewing(self) -> bool:
        """Whether the renewer's task runs (it does while a lock is held)."""
        return self._renewer.running

    def lock(
        self,
        name: str,
        *,
        lease: Seconds | None = None,
        timeout: Seconds | None = None,
        blocking: bool = True,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> AsyncLock:
        """An :class:`AsyncLock` for ``name``, not held yet (see :meth:`pglock.Client.lock`)."""
        return AsyncLock(
            self,
            name,
            lease=lease,
            timeout=timeout,
            blocking=blocking,
            data=encode_data(data, data_json),
            on_lost=on_lost,
        )

    async def acquire(
        self,
        name: str,
        *,
        lease: Seconds | None = None,
        timeout: Seconds | None = None,
        blocking: bool = True,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> AsyncLock:
        """Takes the lock ``name`` and returns it held (see :meth:`pglock.Client.acquire`)."""
        lock = self.lock(
            name, lease=lease, timeout=timeout, blocking=blocking, data=data,
            data_json=data_json, on_lost=on_lost,
        )  # fmt: skip
        await lock._take(None, UNSET)
        return lock

    def semaphore(
        self,
        name: str,
        slots: int,
        *,
        lease: Seconds | None = None,
        timeout: Seconds | None = None,
        blocking: bool = True,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> AsyncLock:
        """An :class:`AsyncLock` on one of ``slots`` slots of the semaphore ``name``."""
        return AsyncLock(
            self,
            name,
            lease=lease,
            timeout=timeout,
            blocking=blocking,
            data=encode_data(data, data_json),
            on_lost=on_lost,
            slots=slots,
        )

    async def acquire_slot(
        self,
        name: str,
        slots: int,
        *,
        lease: Seconds | None = None,
        timeout: Seconds | None = None,
        blocking: bool = True,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> AsyncLock:
        """Takes one of ``slots`` slots of the semaphore ``name``."""
        lock = self.semaphore(
            name, slots, lease=lease, timeout=timeout, blocking=blocking, data=data,
            data_json=data_json, on_lost=on_lost,
        )  # fmt: skip
        await lock._take(None, UNSET)
        return lock

    def synchronized(
        self,
        name: str,
        *,
        lease: Seconds | None = None,
        blocking: bool = True,
        timeout: Seconds | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R | None]]]:
        """A decorator for coroutine functions: run under the lock ``name``
        (see :meth:`pglock.Client.synchronized`)."""

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | None]]:
            @functools.wraps(function)
            async def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
                lock = self.lock(name, lease=lease, timeout=timeout, blocking=blocking)
                try:
                    await lock._take(None, UNSET)
                except NotAcquired:
                    if blocking:
                        raise
                    logger.info("lock %r is held: %s skipped", name, function.__qualname__)
                    return None
                try:
                    return await function(*args, **kwargs)
                finally:
                    await lock.release()

            return run

        return decorate

    def election(self, name: str, *, lease: Seconds | None = None) -> AsyncElection:
        """Leader election on the lock ``name`` (see :class:`AsyncElection`)."""
        return AsyncElection(self, name, lease=lease)

    async def get(self, name: str) -> LockInfo | None:
        """The lock ``name`` as it is now, or ``None`` if it does not exist."""
        rows = await self._call(_sql.GET, (name,))
        return _sql.lock_info(rows[0]) if rows else None

    async def close(self) -> None:
        """Releases the locks still held, ends waits in flight, stops the renewer's
        task and closes the client's own connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._connections.cancel_all()
        for _, held in await self._renewer.close():
            try:
                await self._call(_sql.RELEASE, (held.name, held.owner, held.rvn, False, None))
            except PglockError as error:
                logger.warning("releasing %r at close failed: %s", held.name, error)
            if held.lose(LostReason.CLIENT_CLOSED):
                _fire(held)
        await self._connections.close()

    # -- internals ----------------------------------------------------------

    async def _call(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        for attempt in (1, 2):
            try:
                async with self._connections.connection(None) as conn:
                    return await _run(conn, query, params, self._prepare)
            except psycopg.Error as error:
                if attempt == 1 and _terminated(error):
                    continue
                raise from_psycopg(error) from error
        raise AssertionError("unreachable")

    def _check_open(self) -> None:
        if self._closed:
            raise PglockError("the client is closed")

    async def _take(
        self,
        name: str,
        lease: float,
        data: bytes | None,
        blocking: bool,
        timeout: float | None,
        on_lost: LostCallback | None,
        slots: int | None,
    ) -> tuple[Held, int]:
        self._check_open()
        if slots is None:
            taken = await self._take_lock(name, lease, data, blocking, timeout)
        else:
            taken = await self._take_slot(name, slots, lease, data, blocking, timeout)
        name_held, rvn, got_data, sent = taken
        timing = Timing.of(lease, self._options.period, self._options.poll_interval)
        held = Held(name_held, self.owner, rvn, got_data, timing, sent, on_lost)
        try:
            key = self._renewer.register(held, sent)
        except PglockError:
            await self._call(_sql.RELEASE, (name_held, self.owner, rvn, False, None))
            raise
        logger.debug("acquired %r at rvn %d", name_held, rvn)
        return held, key

    def _slice(self, lease: float, deadline: float | None, now: float) -> float:
        wait = min(self._options.server_wait, lease / 2)
        if deadline is not None:
            wait = min(wait, deadline - now)
        return max(wait, 0.0)

    async def _take_lock(
        self, name: str, lease: float, data: bytes | None, blocking: bool, timeout: float | None
    ) -> tuple[str, int, bytes | None, float]:
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        holder = None
        while True:
            self._check_open()
            now = time.monotonic()
            observed = self._seen.takeover_rvn(name, now)
            if not blocking or observed is not None:
                sent = time.monotonic()
                rows = await self._call(
                    _sql.ACQUIRE, (name, self.owner, lease, data, False, observed)
                )
                row = rows[0]
                if row[0]:
                    self._seen.forget(name)
                    return name, row[1], _sql.holder(row).data, sent
                self._seen.refused(name, row[1], row[3], time.monotonic())
                holder = _sql.holder(row)
                if not blocking:
                    raise NotAcquired(name, holder, None)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise NotAcquired(name, holder, now - start)
            wait = self._slice(lease, deadline, now)
            takeover = self._seen.next_takeover(name)
            if takeover is not None and takeover > now:
                wait = min(wait, takeover - now + 0.001)
            sent = time.monotonic()
            try:
                rows = await self._call(
                    _sql.ACQUIRE_WAIT, (name, self.owner, lease, data, False, wait)
                )
            except PglockError:
                self._check_open()
                raise
            row = rows[0]
            if row[0]:
                self._seen.forget(name)
                return name, row[1], _sql.holder(row).data, sent
            self._seen.refused(name, row[1], row[3], time.monotonic())
            holder = _sql.holder(row)

    async def _take_slot(
        self,
        name: str,
        slots: int,
        lease: float,
        data: bytes | None,
        blocking: bool,
        timeout: float | None,
    ) -> tuple[str, int, bytes | None, float]:
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        while True:
            self._check_open()
            now = time.monotonic()
            wait = self._slice(lease, deadline, now) if blocking else 0.0
            sent = time.monotonic()
            try:
                rows = await self._call(
                    _sql.ACQUIRE_SLOT, (name, self.owner, slots, lease, data, wait)
                )
            except PglockError:
                self._check_open()
                raise
            if rows[0][0]:
                return rows[0][1], rows[0][2], data, sent
            now = time.monotonic()
            for info_row in await self._call(_sql.GET_SLOTS, (slots, name)):
                info = _sql.lock_info(info_row)
                if info.released:
                    continue
                self._seen.refused(info.name, info.rvn, info.lease, now)
                observed = self._seen.takeover_rvn(info.name, now)
                if observed is None:
                    continue
                sent = time.monotonic()
                got = await self._call(
                    _sql.ACQUIRE, (info.name, self.owner, lease, data, True, observed)
                )
                if got[0][0]:
                    self._seen.forget(info.name)
                    return info.name, got[0][1], data, sent
            now = time.monotonic()
            if not blocking or (deadline is not None and now >= deadline):
                raise NotAcquired(name, None, None if not blocking else now - start)

    async def _release(self, held: Held, key: int, keep: bool, data: bytes | None) -> None:
        await self._renewer.stop(key, held)
        if held.reason is LostReason.CLIENT_CLOSED:
            raise held.error()
        lost_before = held.check()
        try:
            rows = await self._call(_sql.RELEASE, (held.name, held.owner, held.rvn, keep, data))
        except InvalidArgument:
            if lost_before:
                held.finish()
            raise
        except BaseException:
            held.finish()
            raise
        if lost_before:
            raise held.error()
        if not rows[0][0]:
            if held.lose(LostReason.NOT_HELD, "the release found it not held at our RVN"):
                _fire(held)
            raise held.error()
        held.finish()
        logger.debug("released %r", held.name)

    async def _watch_available(self) -> bool:
        if self._has_watch is None:
            self._has_watch = bool((await self._call(_sql.HAS_WATCH, ()))[0][0])
        return self._has_watch


# --------------------------------------------------------------------------
# Leader election


class AsyncElection:
    """Leader election on one lock, for asyncio (see :class:`pglock.Election`)."""

    def __init__(self, client: AsyncClient, name: str, *, lease: Seconds | None = None) -> None:
        self._client = client
        self.name = name
        self._lease = lease
        self._lock: AsyncLock | None = None

    def __repr__(self) -> str:
        return f"<pglock.AsyncElection {self.name!r} leader={self.is_leader()}>"

    @property
    def lock(self) -> AsyncLock | None:
        """The lock while this client leads (its RVN fences the leader's work)."""
        return self._lock

    async def campaign(
        self,
        *,
        timeout: Seconds | None = None,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> AsyncLock:
        """Waits to become leader (at most ``timeout``); returns the held lock."""
        if self.is_leader() and self._lock is not None:
            return self._lock
        lock = await self._client.acquire(
            self.name,
            lease=self._lease,
            timeout=timeout,
            data=encode_data(data, data_json),
            on_lost=on_lost,
        )
        self._lock = lock
        return lock

    def is_leader(self) -> bool:
        """Whether this client leads now (holds the lock, not lost)."""
        return self._lock is not None and self._lock.locked()

    async def resign(self) -> None:
        """Steps down (releases the lock); nothing if not leader."""
        lock, self._lock = self._lock, None
        if lock is not None and lock.rvn is not None:
            await lock.release()

    async def leader(self) -> LockInfo | None:
        """The leader now: the lock's row if held, ``None`` if nobody leads."""
        return _leading(await self._client.get(self.name))

    async def observe(
        self, *, timeout: Seconds | None = None
    ) -> AsyncGenerator[LockInfo | None, None]:
        """Yields the leader now, then each new leader as it comes (``None`` when
        nobody leads), until ``timeout`` passes or the client closes."""
        end = None if timeout is None else time.monotonic() + seconds(timeout)
        client = self._client
        row = await client.get(self.name)
        leader = _leading(row)
        yield leader
        while not client._closed:
            now = time.monotonic()
            if end is not None and now >= end:
                return
            wait = client._options.server_wait
            if end is not None:
                wait = min(wait, end - now)
            if await client._watch_available():
                rvn = None if row is None else row.rvn
                try:
                    rows = await client._call(_sql.WATCH, (self.name, rvn, wait))
                except PglockError:
                    if client._closed:
                        return
                    raise
                info = _sql.lock_info(rows[0]) if rows else None
                if (info is None and row is None) or (info is not None and info.rvn == rvn):
                    continue
            else:
                await asyncio.sleep(min(client._options.poll_interval, wait))
                info = await client.get(self.name)
            new = _leading(info)
            if _leader_changed(leader, new):
                yield new
            row, leader = info, new
