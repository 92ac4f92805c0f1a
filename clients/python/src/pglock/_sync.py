"""The client for threads: :class:`Client`, :class:`Lock`, :class:`Election`.

Every pglock call runs in autocommit, one atomic step each. One background
thread per client, its renewer, renews every lock the client holds with one
``pglock_heartbeat_many`` call per period over a connection of its own; it runs
while the client holds a lock and ends with the last one (and at ``close()``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
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
    from psycopg_pool import ConnectionPool

__all__ = ["Client", "Election", "Lock", "LostSignal"]

logger = logging.getLogger("pglock")

P = ParamSpec("P")
R = TypeVar("R")
Connection: TypeAlias = "psycopg.Connection[Any]"
Source: TypeAlias = "str | psycopg.Connection[Any] | ConnectionPool[Any]"


# --------------------------------------------------------------------------
# Connections


def _run(conn: Connection, query: str, params: tuple[Any, ...], prepare: bool | None) -> list[Any]:
    """Runs one pglock statement by itself, committed; every row."""
    try:
        rows = conn.execute(query, params, prepare=prepare).fetchall()
        if not conn.autocommit:
            conn.commit()
    except psycopg.Error:
        if not conn.autocommit and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        raise
    return rows


def _cancel(conn: Connection) -> None:
    """Cancels the statement running on ``conn``, from another thread."""
    try:
        if hasattr(conn, "cancel_safe"):
            conn.cancel_safe(timeout=5.0)
        else:  # psycopg 3.1
            conn.cancel()
    except Exception as error:  # noqa: BLE001 - a cancel is best effort
        logger.debug("cancel failed: %s", error)


class _Connections:
    """Where a client's calls get a connection: its own, a pool's, or the caller's one."""

    exclusive = True
    """A connection handed out is ours alone while in use, so a cancel hits only our call."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._in_use: set[Connection] = set()

    @contextlib.contextmanager
    def connection(self, timeout: float | None, renewal: bool = False) -> Iterator[Connection]:
        """A connection for one call, given back afterwards."""
        conn = self._get(timeout, renewal)
        with self._mutex:
            self._in_use.add(conn)
        broken = False
        try:
            yield conn
        except psycopg.Error as error:
            broken = is_connection_error(error)
            raise
        finally:
            with self._mutex:
                self._in_use.discard(conn)
            self._put(conn, renewal, broken)

    def cancel_all(self) -> None:
        """Cancels every call in flight (at close, to end waits in the server)."""
        with self._mutex:
            in_use = list(self._in_use)
        for conn in in_use:
            _cancel(conn)

    def close(self) -> None:
        """Closes what the client opened."""

    @property
    def reconnects(self) -> int:
        """How many connections were opened to replace broken ones."""
        return 0

    def _get(self, timeout: float | None, renewal: bool) -> Connection:
        raise NotImplementedError

    def _put(self, conn: Connection, renewal: bool, broken: bool) -> None:
        raise NotImplementedError


class _OwnConnections(_Connections):
    """Connections the client opens from a connection string, and opens again when
    they break (with backoff): one kept for the renewer, others for calls."""

    MAX_IDLE = 4

    def __init__(self, conninfo: str, prepare: bool | None, backoff_cap: float) -> None:
        super().__init__()
        self._conninfo = own_conninfo(conninfo)
        self._prepare_threshold = None if prepare is False else 5
        self._idle: list[Connection] = []
        self._renewal: Connection | None = None
        self._attempts = threading.Lock()
        self._backoff = Backoff(cap=backoff_cap)
        self._opened = 0
        self._replaced = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<own connections: {len(self._idle)} idle, {len(self._in_use)} in use>"

    @property
    def reconnects(self) -> int:
        return self._replaced

    def _get(self, timeout: float | None, renewal: bool) -> Connection:
        with self._mutex:
            if self._closed:
                raise PglockError("the client is closed")
            if renewal and self._renewal is not None:
                conn, self._renewal = self._renewal, None
                return conn
            if not renewal and self._idle:
                return self._idle.pop()
        return self._open(timeout)

    def _open(self, timeout: float | None) -> Connection:
        started = time.monotonic()
        if not self._attempts.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise ConnectionFailed("timed out waiting for another attempt to connect")
        try:
            wait = self._backoff.next_at - time.monotonic()
            if timeout is not None:
                wait = min(wait, timeout - (time.monotonic() - started))
            if wait > 0:
                time.sleep(wait)
            try:
                conn = psycopg.Connection.connect(
                    self._conninfo, autocommit=True, prepare_threshold=self._prepare_threshold
                )
            except psycopg.Error as error:
                self._backoff.failed(time.monotonic())
                logger.info("connecting failed: %s", describe(error))
                raise ConnectionFailed(describe(error), error) from error
            self._backoff.succeeded()
            with self._mutex:
                self._opened += 1
            return conn
        finally:
            self._attempts.release()

    def _put(self, conn: Connection, renewal: bool, broken: bool) -> None:
        usable = (
            not broken
            and not conn.closed
            and conn.info.transaction_status == pq.TransactionStatus.IDLE
        )
        with self._mutex:
            if usable and not self._closed:
                if renewal and self._renewal is None:
                    self._renewal = conn
                    return
                if not renewal and len(self._idle) < self.MAX_IDLE:
                    self._idle.append(conn)
                    return
            if not usable:
                self._replaced += 1
        conn.close()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            idle, self._idle = self._idle, []
            if self._renewal is not None:
                idle.append(self._renewal)
                self._renewal = None
        for conn in idle:
            conn.close()


class _PoolConnections(_Connections):
    """Connections borrowed from the caller's ``psycopg_pool.ConnectionPool``, one per call."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        super().__init__()
        self._pool = pool

    def __repr__(self) -> str:
        return f"<pool {self._pool.name!r}>"

    def _get(self, timeout: float | None, renewal: bool) -> Connection:
        try:
            conn: Connection = self._pool.getconn(timeout=timeout)
        except Exception as error:
            raise ConnectionFailed(f"no connection from the pool: {error}") from error
        return conn

    def _put(self, conn: Connection, renewal: bool, broken: bool) -> None:
        self._pool.putconn(conn)


class _GivenConnection(_Connections):
    """The caller's one connection, for every call: psycopg lets one statement run at
    a time, so waits in the server are kept short to let renewals through."""

    exclusive = False

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn

    def __repr__(self) -> str:
        return f"<connection {self._conn.info.dsn!r}>"

    def _get(self, timeout: float | None, renewal: bool) -> Connection:
        return self._conn

    def _put(self, conn: Connection, renewal: bool, broken: bool) -> None:
        pass

    def cancel_all(self) -> None:
        # Shared with the renewer: a cancel could hit a renewal. Waits are short.
        pass


def _sources(source: Source, prepare: bool | None, backoff: float) -> _Connections:
    if isinstance(source, str):
        return _OwnConnections(source, prepare, backoff)
    if isinstance(source, psycopg.Connection):
        if not source.autocommit:
            raise ValueError("the connection must be in autocommit mode")
        return _GivenConnection(source)
    try:
        from psycopg_pool import ConnectionPool
    except ImportError:  # the optional extra is not installed
        pass
    else:
        if isinstance(source, ConnectionPool):
            return _PoolConnections(source)
    raise TypeError(
        "a Client is made from a connection string, a psycopg.Connection or a "
        f"psycopg_pool.ConnectionPool, not {type(source).__name__}"
    )


# --------------------------------------------------------------------------
# The renewer


LINGER = 1.0
"""How long the renewer outlives the client's last lock, in case another comes."""


class _Renewer:
    """One thread per client renewing every lock the client holds; it starts with the
    first lock and ends :data:`LINGER` seconds after the last one, or at close."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._cond = threading.Condition()
        self._registry = Registry()
        self._thread: threading.Thread | None = None
        self._closed = False
        # When the renewer's current wait ends (None while it is not waiting).
        self._wake_at: float | None = None
        self.calls = 0

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"<renewer {len(self._registry.entries)} locks, {'running' if running else 'idle'}>"

    @property
    def running(self) -> bool:
        """Whether the renewer's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def register(self, held: Held, sent: float) -> int:
        """Starts renewing ``held``, acquired by a request sent at ``sent``."""
        with self._cond:
            if self._closed:
                raise PglockError("the client is closed")
            key = self._registry.insert(held, sent)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name=f"pglock-renewer-{self._client.owner}", daemon=True
                )
                self._thread.start()
            elif self._wake_at is None or sent + held.timing.period < self._wake_at:
                # Only when the new lock is due before the renewer would wake anyway:
                # waking a thread costs more than the SQL of a quick acquire.
                self._cond.notify_all()
            return key

    def stop(self, key: int, held: Held) -> None:
        """Stops renewing ``held``; waits for a call in flight that includes it, so
        that ``held`` has the lock's latest RVN."""
        with self._cond:
            # No need to wake the renewer: at its next wake it finds one lock fewer.
            self._registry.remove(key)
            while held.in_call:
                self._cond.wait()

    @contextlib.contextmanager
    def fencing(self, held: Held) -> Iterator[None]:
        """Keeps ``held`` out of renewals while its fence is sent (the fence names the
        current RVN, which a renewal would change under it)."""
        with self._cond:
            while held.in_call:
                self._cond.wait()
            held.fencing += 1
        try:
            yield
        finally:
            with self._cond:
                held.fencing -= 1
                self._cond.notify_all()

    def close(self) -> list[tuple[int, Held]]:
        """Stops the thread; returns the locks still registered."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        # Not from the renewer's own threads (a loss callback closing the client):
        # the thread ends by itself right after.
        current = threading.current_thread()
        if thread is not None and thread is not current and current.name != _WATCH_THREAD:
            thread.join()
        with self._cond:
            left = list(self._registry.entries.items())
            self._registry.entries.clear()
            return [(key, entry.held) for key, entry in left]

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # logged: the thread prints nothing
            # A bug, not a database error (those are retried): nothing renews the
            # locks any more, so they are lost now rather than silently.
            logger.exception("the renewer stopped")
            with self._cond:
                left = [entry.held for entry in self._registry.entries.values()]
                self._registry.entries.clear()
                self._thread = None
            for held in left:
                if held.lose(LostReason.HEARTBEATS_FAILED, "the client's renewer stopped"):
                    _fire(held)

    def _loop(self) -> None:
        idle_until: float | None = None
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    expired = self._registry.expire(now)
                    if expired:
                        break
                    plan = self._registry.plan(now)
                    if isinstance(plan, Idle):
                        # Linger a little: a worker taking lock after lock does not
                        # start a thread for each.
                        idle_until = idle_until or now + LINGER
                        if now < idle_until:
                            self._wait_until(idle_until, now)
                            continue
                        self._thread = None
                        return
                    idle_until = None
                    if isinstance(plan, Sleep):
                        self._wait_until(plan.until, now)
                        continue
                    break
            if expired:
                for held in expired:
                    _fire(held)
                continue
            assert isinstance(plan, Renew)
            self._renew(plan.members)

    def _wait_until(self, until: float, now: float) -> None:
        """Waits (holding the condition) until ``until`` or a wake-up."""
        self._wake_at = until
        try:
            self._cond.wait(max(until - now, 0.0))
        finally:
            self._wake_at = None

    def _renew(self, members: list[Member]) -> None:
        try:
            client = self._client
            sent = time.monotonic()
            # Abandoned after a period, or at the latest deadline of its locks.
            period = min(m.held.timing.period for m in members)
            limit = max(min(sent + period, max(m.lost_at for m in members)) - sent, 0.001)
            names = [m.held.name for m in members]
            rvns = [m.rvn for m in members]
            outcome: list[tuple[str, int | None, bool]] | str
            try:
                with (
                    _CallWatch(self, limit) as watch,
                    client._connections.connection(limit, renewal=True) as conn,
                ):
                    watch.conn = conn
                    rows = _run(
                        conn, _sql.HEARTBEAT_MANY, (client.owner, names, rvns), client._prepare
                    )
                if watch.cancelled:
                    # An answer to a call we cancelled is not to be believed: a
                    # commit waiting for a synchronous standby, cancelled, commits
                    # on this server alone and answers success (with a WARNING),
                    # and a failover then loses it. Retried like any failure: the
                    # next call finds the locks not renewed if it did commit.
                    raise _CancelledAtLimit(f"no answer within {limit:.3g} s (cancelled)")
                outcome = [(row[0], row[1], row[2]) for row in rows]
                self.calls += 1
            except Exception as error:  # noqa: BLE001 - every failure of the call is retried
                outcome = describe(error) if isinstance(error, psycopg.Error) else str(error)
                logger.warning("renewing %d locks failed (retrying): %s", len(members), outcome)
            now = time.monotonic()
            with self._cond:
                refused = self._registry.settle(members, sent, outcome, now)
                expired = self._registry.expire(now)
                self._cond.notify_all()
            for member in refused:
                logger.warning("lock %r lost: not renewed by the server", member.held.name)
                self._why_not_held(member)
                _fire(member.held)
            for held in expired:
                _fire(held)
        finally:
            # However the call ended, no lock stays marked as in it.
            with self._cond:
                for member in members:
                    member.held.in_call = False
                self._cond.notify_all()

    def _why_not_held(self, member: Member) -> None:
        """A lock not renewed whose row still shows our owner and RVN is another role's."""
        try:
            info = self._client.get(member.held.name)
        except PglockError:
            return
        ours = info is not None and (info.owner, info.rvn) == (member.held.owner, member.rvn)
        if ours and info is not None and not info.released:
            member.held.narrow_to_other_role()


_WATCH_THREAD = "pglock-call-watch"


class _CancelledAtLimit(Exception):
    """A renewal call cancelled at its limit, whatever it answered."""


class _CallWatch:
    """While a renewal call is out: cancels it at its limit (on a connection that is
    ours alone), and declares lost the locks whose deadlines come meanwhile, so
    their callbacks run on time however long the call hangs. Its thread lives
    only as long as the call."""

    def __init__(self, renewer: _Renewer, limit: float) -> None:
        self.conn: Connection | None = None
        # Set before the cancel is sent: whatever the call answers after it
        # counts for nothing.
        self.cancelled = False
        self._renewer = renewer
        self._end = time.monotonic() + limit
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=_WATCH_THREAD, daemon=True)

    def __enter__(self) -> _CallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        renewer = self._renewer
        cancelled = False
        while True:
            now = time.monotonic()
            with renewer._cond:
                expired = renewer._registry.expire(now)
                deadline = renewer._registry.next_deadline()
            for held in expired:
                _fire(held)
            wakes = [] if deadline is None else [deadline]
            if not cancelled:
                wakes.append(self._end)
            timeout = max(min(wakes) - now, 0.0) + 0.0005 if wakes else None
            if self._done.wait(timeout):
                return
            if not cancelled and time.monotonic() >= self._end:
                cancelled = True
                conn = self.conn
                if conn is not None and renewer._client._connections.exclusive:
                    logger.info("renewal call out past its limit: cancelling it")
                    self.cancelled = True
                    _cancel(conn)


def _terminated(error: psycopg.Error) -> bool:
    """Whether a call that failed with ``error`` is tried once more, on a new connection.

    For a connection that broke (most often one that sat idle while its server
    restarted: psycopg 3.1 reports it without a SQLSTATE, later ones as 57P01)
    or a server that turned read-only (25006, a former primary). A statement cut
    off that way did not commit; one whose commit went through but whose reply
    was lost is, tried again, refused (an acquire: the lock lapses after its
    lease) or answered ``false`` (a release: reported lost), never granted twice.
    """
    return is_connection_error(error)


def _fire(held: Held) -> None:
    """Calls the loss callback of ``held``, once; its errors are logged."""
    callback = held.callback_due()
    if callback is None:
        return
    try:
        callback()
    except Exception:
        logger.exception("the on_lost callback of lock %r raised", held.name)


# --------------------------------------------------------------------------
# The loss signal


class LostSignal:
    """Set once a lock held is lost, or released: nothing may be done under it after.

    Like a :class:`threading.Event` you cannot set: :meth:`is_set` and :meth:`wait`.
    It reads the lock's deadline itself, so it is never late, whatever the
    renewer is doing.
    """

    def __init__(self, held: Held | None) -> None:
        self._held = held
        self._cond = threading.Condition()
        if held is not None:
            held.add_listener(self._wake)

    def __repr__(self) -> str:
        return f"<LostSignal {'set' if self.is_set() else 'not set'}>"

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def is_set(self) -> bool:
        """Whether the lock is over (lost or released)."""
        return self._held is None or self._held.check()

    def wait(self, timeout: Seconds | None = None) -> bool:
        """Waits until the lock is over, at most ``timeout``; returns :meth:`is_set`."""
        end = None if timeout is None else time.monotonic() + seconds(timeout)
        with self._cond:
            while not self.is_set():
                now = time.monotonic()
                assert self._held is not None
                wake = self._held.deadline - now
                if end is not None:
                    if now >= end:
                        return False
                    wake = min(wake, end - now)
                self._cond.wait(max(wake, 0.0) + 0.0005)
        return True


# --------------------------------------------------------------------------
# Locks


class Lock:
    """A lock of the client, held or not, used like a :class:`threading.Lock`.

    Made by :meth:`Client.lock` (not held) or :meth:`Client.acquire` (held).
    ``acquire()`` takes the lease in the server (threads of this process sharing
    the object take turns on it first, as on a ``threading.Lock``), ``release()``
    gives it back, ``with lock:`` does both and raises :class:`LockLost` at the
    end of the block if the lock was lost meanwhile. While held, the client's
    renewer renews it; :attr:`lost` is set the moment it is lost.
    """

    def __init__(
        self,
        client: Client,
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
        self._mutex = threading.Lock()
        self._held: Held | None = None
        self._key = -1
        self._signal = LostSignal(None)

    def __repr__(self) -> str:
        held = self._held
        if held is None:
            state = "not held"
        elif held.check():
            state = f"lost ({held.reason.value})" if held.reason else "released"
        else:
            state = f"held, rvn={held.rvn}"
        kind = f" slot of {self._requested!r}/{self._slots}" if self._slots else ""
        return f"<pglock.Lock {self.name!r}{kind} owner={self._client.owner!r} {state}>"

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
        """The fencing token: the lock's latest RVN (it changes with every renewal);
        ``None`` when not held."""
        held = self._held
        return None if held is None else held.rvn

    @property
    def data(self) -> bytes | None:
        """The lock's data when it was acquired (a previous holder's kept data, or ours)."""
        held = self._held
        return None if held is None else held.data

    def data_json(self) -> Any:
        """:attr:`data` read as JSON."""
        return decode_json(self.data)

    @property
    def lost(self) -> LostSignal:
        """Set once the lock is lost or released (see :class:`LostSignal`)."""
        return self._signal

    @property
    def lost_reason(self) -> LostReason | None:
        """Why the lock was lost; ``None`` while held, or when released normally."""
        held = self._held
        if held is None or not held.check():
            return None
        return held.reason

    def locked(self) -> bool:
        """Whether this object holds the lock now: acquired, not released, not lost.

        To see whether anyone holds a lock, use :meth:`Client.get`.
        """
        held = self._held
        return held is not None and not held.check()

    def acquire(
        self, blocking: bool | None = None, timeout: Seconds | _Unset | None = UNSET
    ) -> bool:
        """Takes the lock; ``True`` once held, ``False`` if it was not free in time.

        ``blocking`` and ``timeout`` default to the lock's own (from
        :meth:`Client.lock`); ``timeout=None`` waits as long as it takes. Server
        errors raise (e.g. :class:`InvalidArgument` for a bad lease).
        """
        try:
            self._take(blocking, timeout)
        except NotAcquired:
            return False
        return True

    def _take(self, blocking: bool | None, timeout: Seconds | _Unset | None) -> None:
        """:meth:`acquire`, raising :class:`NotAcquired` with what it saw."""
        blocking = self._blocking if blocking is None else blocking
        limit = self._timeout if isinstance(timeout, _Unset) else timeout
        wait = None if limit is None else seconds(limit)
        start = time.monotonic()
        if not self._mutex.acquire(blocking, -1 if wait is None or not blocking else wait):
            raise NotAcquired(self._requested, None, wait)
        left = None if wait is None else max(wait - (time.monotonic() - start), 0.0)
        try:
            held, key = self._client._take(
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
        self._signal = LostSignal(held)

    def release(
        self, keep: bool = False, data: bytes | None = None, *, data_json: Any = UNSET
    ) -> None:
        """Releases the lock; with ``keep=True`` its row stays, with ``data`` (or
        ``data_json``) if given, for the next holder.

        Raises :class:`LockLost` if the lock was lost (the server did not hold it
        at our RVN any more), :class:`NotHeld` if this object does not hold it.
        """
        held = self._held
        if held is None:
            raise NotHeld(f"lock {self._requested!r} is not held by this Lock")
        encoded = encode_data(data, data_json)
        try:
            self._client._release(held, self._key, keep, encoded)
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

    def fence(self, conn: Any) -> int:
        """Runs ``pglock_fence`` on the caller's own connection, in its transaction.

        ``conn`` is a psycopg ``Connection`` or a DB-API cursor (Django's
        ``connection.cursor()``; SQLAlchemy: ``session.connection().connection``
        gives the driver's). Until that transaction ends, no takeover, heartbeat
        or release of the lock by another transaction can commit, so its writes
        commit only while the lock is held. Returns the RVN fenced with (the
        token to store beside the writes). Raises :class:`LockLost` (with the
        server's ``55000``) and marks the lock lost if it is not held any more;
        the transaction is then aborted and must be rolled back.
        """
        held = self._held
        if held is None:
            raise NotHeld(f"lock {self._requested!r} is not held by this Lock")
        with self._client._renewer.fencing(held):
            if held.check():
                raise held.error()
            rvn = held.rvn
            params = (held.name, held.owner, rvn)
            try:
                if isinstance(conn, psycopg.Connection):
                    conn.execute(_sql.FENCE, params, prepare=self._client._prepare).fetchone()
                else:
                    conn.execute(_sql.FENCE, params)
                    conn.fetchone()
            except Exception as error:  # noqa: BLE001 - always raises again
                _raise_fence_error(held, error)
        return rvn

    def __enter__(self) -> Lock:
        self._take(None, UNSET)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _find_psycopg_error(error: BaseException) -> psycopg.Error | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, psycopg.Error):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _raise_fence_error(held: Held, error: BaseException) -> None:
    pg = _find_psycopg_error(error)
    if pg is not None and pg.sqlstate in ("55000", "42501"):
        reason = LostReason.NOT_HELD if pg.sqlstate == "55000" else LostReason.HELD_BY_OTHER_ROLE
        held.lose(reason, describe(pg))
        _fire(held)
        raise LockLost(held.name, reason, describe(pg), pg) from error
    if pg is not None and isinstance(error, psycopg.Error):
        raise from_psycopg(pg) from error
    raise error


# --------------------------------------------------------------------------
# The client


class Client:
    """A pglock client for threads.

    ``source`` is a connection string (the client opens its own connections,
    and opens them again when they break), a ``psycopg.Connection`` in
    autocommit mode (used for every call, and by nothing else meanwhile) or a
    ``psycopg_pool.ConnectionPool`` (one connection per call; keep one more than
    the threads that wait at once, for renewals).

    * ``owner``: the owner label of every lock (default: host, pid and a random part).
    * ``lease``: the default lease in seconds (``acquire`` may give another).
    * ``period``: how often a lock is renewed; default a third of its lease, at
      most half of it.
    * ``poll_interval``: how soon a failed renewal is retried (at most a period),
      and how often the client polls where it must.
    * ``server_wait``: the longest one wait in the server may last before the
      client asks again (default 5 s; 0.1 s with ``pgbouncer``; the poll interval
      on a single given connection). A wait is also cut at half the lease asked
      for, so a lock taken late in a wait has time for its first renewal. Behind
      a pooler, each wait holds one of the pool's server connections, and
      renewals (anyone's) queue behind it: keep it well under a quarter of the
      shortest lease of the pool's users, or size the pool above the waiters.
    * ``pgbouncer``: send every statement unprepared, as PgBouncer in transaction
      mode needs (``prepare_threshold=None`` on the client's own connections).

    Close it (or use ``with Client(...) as client:``): that releases the locks it
    still holds and stops its thread.
    """

    def __init__(
        self,
        source: Source,
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
        self._connections = _sources(source, prepare, poll)
        if server_wait is None:
            if isinstance(self._connections, _GivenConnection):
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
        self._renewer = _Renewer(self)
        self._closed = False
        self._has_watch: bool | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else repr(self._renewer)
        return f"<pglock.Client owner={self.owner!r} via {self._connections!r} {state}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
        """Whether the renewer's thread runs (it does while a lock is held)."""
        return self._renewer.running

    # -- taking locks -------------------------------------------------------

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
    ) -> Lock:
        """A :class:`Lock` for ``name``, not held yet: for ``with client.lock(name):``.

        ``timeout`` and ``blocking`` are what ``with`` and ``acquire()`` use;
        ``data`` (or ``data_json``) is stored when acquired (with neither, the lock
        keeps the data it has); ``on_lost`` is called with a :class:`LockLost`, in
        the renewer's thread, if the lock is lost while held.
        """
        return Lock(
            self,
            name,
            lease=lease,
            timeout=timeout,
            blocking=blocking,
            data=encode_data(data, data_json),
            on_lost=on_lost,
        )

    def acquire(
        self,
        name: str,
        *,
        lease: Seconds | None = None,
        timeout: Seconds | None = None,
        blocking: bool = True,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> Lock:
        """Takes the lock ``name`` and returns it held.

        Waits (in the server) while another holds it, at most ``timeout`` seconds
        (``None``: as long as it takes); a holder whose RVN stands still for its
        lease is taken over. ``blocking=False`` tries once. Raises
        :class:`NotAcquired` when the lock was not taken.
        """
        lock = self.lock(
            name, lease=lease, timeout=timeout, blocking=blocking, data=data,
            data_json=data_json, on_lost=on_lost,
        )  # fmt: skip
        lock._take(None, UNSET)
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
    ) -> Lock:
        """A :class:`Lock` on one of ``slots`` slots of the semaphore ``name``, not held yet.

        Every caller must pass the same ``slots``. Held, it is the slot taken
        (named ``name#k``), renewed and released like any lock.
        """
        return Lock(
            self,
            name,
            lease=lease,
            timeout=timeout,
            blocking=blocking,
            data=encode_data(data, data_json),
            on_lost=on_lost,
            slots=slots,
        )

    def acquire_slot(
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
    ) -> Lock:
        """Takes one of ``slots`` slots of the semaphore ``name``, as :meth:`acquire` a lock."""
        lock = self.semaphore(
            name, slots, lease=lease, timeout=timeout, blocking=blocking, data=data,
            data_json=data_json, on_lost=on_lost,
        )  # fmt: skip
        lock._take(None, UNSET)
        return lock

    def synchronized(
        self,
        name: str,
        *,
        lease: Seconds | None = None,
        blocking: bool = True,
        timeout: Seconds | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
        """A decorator: run the function under the lock ``name``.

        While another holds the lock, the call waits (``blocking=True``, at most
        ``timeout``, then :class:`NotAcquired`), or is skipped and returns
        ``None`` (``blocking=False``, or ``timeout`` passed with
        ``blocking=False``). Raises :class:`LockLost` after the function if the
        lock was lost while it ran.
        """

        def decorate(function: Callable[P, R]) -> Callable[P, R | None]:
            @functools.wraps(function)
            def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
                lock = self.lock(name, lease=lease, timeout=timeout, blocking=blocking)
                try:
                    lock._take(None, UNSET)
                except NotAcquired:
                    if blocking:
                        raise
                    logger.info("lock %r is held: %s skipped", name, function.__qualname__)
                    return None
                try:
                    return function(*args, **kwargs)
                finally:
                    lock.release()

            return run

        return decorate

    def election(self, name: str, *, lease: Seconds | None = None) -> Election:
        """Leader election on the lock ``name`` (see :class:`Election`)."""
        return Election(self, name, lease=lease)

    # -- reading ------------------------------------------------------------

    def get(self, name: str) -> LockInfo | None:
        """The lock ``name`` as it is now (``pglock_get``), or ``None`` if it does not exist."""
        rows = self._call(_sql.GET, (name,))
        return _sql.lock_info(rows[0]) if rows else None

    # -- closing ------------------------------------------------------------

    def close(self) -> None:
        """Releases the locks still held, ends waits in flight, stops the renewer's
        thread and closes the client's own connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._connections.cancel_all()
        for _, held in self._renewer.close():
            try:
                self._call(_sql.RELEASE, (held.name, held.owner, held.rvn, False, None))
            except PglockError as error:
                logger.warning("releasing %r at close failed: %s", held.name, error)
            if held.lose(LostReason.CLIENT_CLOSED):
                _fire(held)
        self._connections.close()

    # -- internals ----------------------------------------------------------

    def _call(
        self, query: str, params: tuple[Any, ...], timeout: float | None = None
    ) -> list[Any]:
        for attempt in (1, 2):
            try:
                with self._connections.connection(timeout) as conn:
                    return _run(conn, query, params, self._prepare)
            except psycopg.Error as error:
                if attempt == 1 and _terminated(error):
                    continue
                raise from_psycopg(error) from error
        raise AssertionError("unreachable")

    def _check_open(self) -> None:
        if self._closed:
            raise PglockError("the client is closed")

    def _take(
        self,
        name: str,
        lease: float,
        data: bytes | None,
        blocking: bool,
        timeout: float | None,
        on_lost: LostCallback | None,
        slots: int | None,
    ) -> tuple[Held, int]:
        """Takes a lock or a slot; registers it with the renewer."""
        self._check_open()
        if slots is None:
            name_held, rvn, got_data, sent = self._take_lock(name, lease, data, blocking, timeout)
        else:
            name_held, rvn, got_data, sent = self._take_slot(
                name, slots, lease, data, blocking, timeout
            )
        timing = Timing.of(lease, self._options.period, self._options.poll_interval)
        held = Held(name_held, self.owner, rvn, got_data, timing, sent, on_lost)
        try:
            key = self._renewer.register(held, sent)
        except PglockError:
            self._call(_sql.RELEASE, (name_held, self.owner, rvn, False, None))
            raise
        logger.debug("acquired %r at rvn %d", name_held, rvn)
        return held, key

    def _slice(self, lease: float, deadline: float | None, now: float) -> float:
        wait = min(self._options.server_wait, lease / 2)
        if deadline is not None:
            wait = min(wait, deadline - now)
        return max(wait, 0.0)

    def _take_lock(
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
                row = self._call(_sql.ACQUIRE, (name, self.owner, lease, data, False, observed))[0]
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
                rows = self._call(_sql.ACQUIRE_WAIT, (name, self.owner, lease, data, False, wait))
                row = rows[0]
            except PglockError:
                self._check_open()
                raise
            if row[0]:
                self._seen.forget(name)
                return name, row[1], _sql.holder(row).data, sent
            self._seen.refused(name, row[1], row[3], time.monotonic())
            holder = _sql.holder(row)

    def _take_slot(
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
                rows = self._call(_sql.ACQUIRE_SLOT, (name, self.owner, slots, lease, data, wait))
                row = rows[0]
            except PglockError:
                self._check_open()
                raise
            if row[0]:
                return row[1], row[2], data, sent
            # Every slot held: watch each holder's RVN, and take over a slot whose
            # RVN stood still for its holder's lease.
            now = time.monotonic()
            for info_row in self._call(_sql.GET_SLOTS, (slots, name)):
                info = _sql.lock_info(info_row)
                if info.released:
                    continue
                self._seen.refused(info.name, info.rvn, info.lease, now)
                observed = self._seen.takeover_rvn(info.name, now)
                if observed is None:
                    continue
                sent = time.monotonic()
                got = self._call(
                    _sql.ACQUIRE, (info.name, self.owner, lease, data, True, observed)
                )
                if got[0][0]:
                    self._seen.forget(info.name)
                    return info.name, got[0][1], data, sent
            now = time.monotonic()
            if not blocking or (deadline is not None and now >= deadline):
                raise NotAcquired(name, None, None if not blocking else now - start)

    def _release(self, held: Held, key: int, keep: bool, data: bytes | None) -> None:
        """Stops renewing ``held`` and releases it in the server."""
        self._renewer.stop(key, held)
        if held.reason is LostReason.CLIENT_CLOSED:
            raise held.error()
        lost_before = held.check()
        try:
            rows = self._call(_sql.RELEASE, (held.name, held.owner, held.rvn, keep, data))
            released = rows[0][0]
        except InvalidArgument:
            if lost_before:
                held.finish()
            raise
        except BaseException:
            held.finish()
            raise
        if lost_before:
            raise held.error()
        if not released:
            if held.lose(LostReason.NOT_HELD, "the release found it not held at our RVN"):
                _fire(held)
            raise held.error()
        held.finish()
        logger.debug("released %r", held.name)

    def _watch_available(self) -> bool:
        if self._has_watch is None:
            self._has_watch = bool(self._call(_sql.HAS_WATCH, ())[0][0])
        return self._has_watch


# --------------------------------------------------------------------------
# Leader election


class Election:
    """Leader election on one lock: the holder is the leader.

    ``campaign()`` waits to become leader (the lock's data announces it, e.g. an
    address), ``is_leader()`` tells whether this client still is, ``resign()``
    steps down, ``leader()`` reads who leads, and ``observe()`` yields each new
    leader as it comes (on ``pglock_watch`` where the server has it, polling
    ``pglock_get`` otherwise).
    """

    def __init__(self, client: Client, name: str, *, lease: Seconds | None = None) -> None:
        self._client = client
        self.name = name
        self._lease = lease
        self._lock: Lock | None = None

    def __repr__(self) -> str:
        return f"<pglock.Election {self.name!r} leader={self.is_leader()}>"

    @property
    def lock(self) -> Lock | None:
        """The lock while this client campaigned and leads (its RVN fences the leader's work)."""
        return self._lock

    def campaign(
        self,
        *,
        timeout: Seconds | None = None,
        data: bytes | None = None,
        data_json: Any = UNSET,
        on_lost: LostCallback | None = None,
    ) -> Lock:
        """Waits to become leader (at most ``timeout``); returns the held lock.

        Raises :class:`NotAcquired` if ``timeout`` passes first.
        """
        if self.is_leader() and self._lock is not None:
            return self._lock
        encoded = encode_data(data, data_json)
        lock = self._client.acquire(
            self.name,
            lease=self._lease,
            timeout=timeout,
            data=encoded,
            on_lost=on_lost,
        )
        self._lock = lock
        return lock

    def is_leader(self) -> bool:
        """Whether this client leads now (holds the lock, not lost)."""
        return self._lock is not None and self._lock.locked()

    def resign(self) -> None:
        """Steps down (releases the lock); nothing if not leader. Raises
        :class:`LockLost` if leadership had been lost meanwhile."""
        lock, self._lock = self._lock, None
        if lock is not None and lock.rvn is not None:
            lock.release()

    def leader(self) -> LockInfo | None:
        """The leader now: the lock's row if held, ``None`` if nobody leads."""
        info = self._client.get(self.name)
        return None if info is None or info.released else info

    def observe(
        self, *, timeout: Seconds | None = None, stop: threading.Event | None = None
    ) -> Iterator[LockInfo | None]:
        """Yields the leader now, then each new leader as it comes (``None`` when
        nobody leads), until ``timeout`` passes, ``stop`` is set or the client closes.

        A new leader is a new owner, or the same owner after nobody led.
        """
        end = None if timeout is None else time.monotonic() + seconds(timeout)
        client = self._client
        row = client.get(self.name)
        leader = _leading(row)
        yield leader
        while not client._closed and not (stop is not None and stop.is_set()):
            now = time.monotonic()
            if end is not None and now >= end:
                return
            # Short waits when a stop event must be noticed soon.
            wait = (
                client._options.server_wait
                if stop is None
                else min(client._options.server_wait, 1.0)
            )
            if end is not None:
                wait = min(wait, end - now)
            if client._watch_available():
                rvn = None if row is None else row.rvn
                try:
                    rows = client._call(_sql.WATCH, (self.name, rvn, wait))
                except PglockError:
                    if client._closed:
                        return
                    raise
                info = _sql.lock_info(rows[0]) if rows else None
                if (info is None and row is None) or (info is not None and info.rvn == rvn):
                    continue  # the watch timed out
            else:
                pause = min(client._options.poll_interval, wait)
                if stop is not None:
                    stop.wait(pause)
                else:
                    time.sleep(pause)
                info = client.get(self.name)
            new = _leading(info)
            if _leader_changed(leader, new):
                yield new
            row, leader = info, new


def _leading(row: LockInfo | None) -> LockInfo | None:
    return None if row is None or row.released else row


def _leader_changed(before: LockInfo | None, after: LockInfo | None) -> bool:
    if before is None or after is None:
        return before is not after
    return after.owner != before.owner
