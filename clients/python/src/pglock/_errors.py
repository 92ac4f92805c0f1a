"""The exceptions of pglock, and how a psycopg error becomes one of them.

Every error the server raised keeps its SQLSTATE, message, DETAIL and HINT (the
psycopg :class:`~psycopg.errors.Diagnostic` is kept whole as ``diag``), so a caller
can tell, for instance, ``22023`` (a bad argument) from ``55000`` (a lock not held).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from psycopg.errors import Diagnostic

    from ._types import Holder, LostReason

__all__ = [
    "ConnectionFailed",
    "DatabaseError",
    "InvalidArgument",
    "LockLost",
    "NotAcquired",
    "NotHeld",
    "PermissionDenied",
    "PglockError",
]


class PglockError(Exception):
    """The base of every error this package raises.

    ``sqlstate``, ``detail``, ``hint`` and ``diag`` are set when the server said
    something (they are ``None`` otherwise); ``str(error)`` reads as the server
    wrote it, e.g. ``ERROR 22023: pglock: name must not be empty``.
    """

    sqlstate: str | None = None
    detail: str | None = None
    hint: str | None = None
    diag: Diagnostic | None = None

    def _take_diagnostic(self, error: psycopg.Error | None) -> None:
        if error is None:
            return
        self.sqlstate = error.sqlstate
        if error.sqlstate is not None:
            self.diag = error.diag
            self.detail = error.diag.message_detail
            self.hint = error.diag.message_hint


class DatabaseError(PglockError):
    """The server raised an error, or the connection to it failed.

    The psycopg error is the ``__cause__``.
    """

    def __init__(self, message: str, error: psycopg.Error | None = None) -> None:
        super().__init__(message)
        self._take_diagnostic(error)


class InvalidArgument(DatabaseError, ValueError):
    """The server refused an argument: SQLSTATE class 22 or ``54000`` (too much data)."""


class PermissionDenied(DatabaseError):
    """``42501``: the role is not a member of ``pglock_user``, or another role holds the lock."""


class ConnectionFailed(DatabaseError):
    """No answer from a server: a connection that could not be made, or that broke.

    Includes a server shutting down (class ``57P``), a read-only server
    (``25006``: a standby, such as a former primary) and connection errors
    (class ``08`` or none at all). The client opens a new connection at its next
    call (see the README, "Connections").
    """


class NotAcquired(PglockError):
    """The lock was not taken: it is held and the wait ran out (or was not allowed).

    ``holder`` is what the last refusal showed of the holder, or ``None`` when the
    refusal showed nobody (a lock reserved for a waiter queued in the server, or
    being created by a transaction that had not committed).
    """

    def __init__(self, name: str, holder: Holder | None, waited: float | None) -> None:
        who = f"held by {holder.owner!r}" if holder and holder.owner else "not free"
        how = "without waiting" if not waited else f"after waiting {waited:.3g} s"
        super().__init__(f"lock {name!r} not acquired {how}: {who}")
        self.name = name
        self.holder = holder
        self.waited = waited


class LockLost(PglockError):
    """A lock is no longer held: work done under it may overlap with its next holder's.

    ``reason`` says why (a :class:`~pglock.LostReason`); ``sqlstate`` and the rest are
    set when the server said so (a fence raising ``55000``, for instance).
    """

    def __init__(
        self,
        name: str,
        reason: LostReason,
        detail: str | None = None,
        error: psycopg.Error | None = None,
    ) -> None:
        text = f"lock {name!r} lost: {reason.describe()}"
        if detail:
            text = f"{text} ({detail})"
        super().__init__(text)
        self.name = name
        self.reason = reason
        self._take_diagnostic(error)


class NotHeld(PglockError, RuntimeError):
    """A call that needs the lock held, on a :class:`~pglock.Lock` that does not hold it.

    For instance ``release()`` of a lock never acquired or already released, as
    :class:`threading.Lock` raises :class:`RuntimeError` for.
    """


_CONNECTION_STATES = ("08", "57P", "25006", "53300")


def describe(error: psycopg.Error) -> str:
    """The error as the server wrote it: ``ERROR 22023: message (DETAIL: ... HINT: ...)``."""
    if error.sqlstate is None:
        return str(error).strip() or type(error).__name__
    diag = error.diag
    text = f"{diag.severity or 'ERROR'} {error.sqlstate}: {diag.message_primary}"
    extras = []
    if diag.message_detail:
        extras.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        extras.append(f"HINT: {diag.message_hint}")
    return f"{text} ({' '.join(extras)})" if extras else text


def is_connection_error(error: psycopg.Error) -> bool:
    """Whether a connection that raised ``error`` should be replaced, not reused."""
    state = error.sqlstate
    if state is None:
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return state.startswith(_CONNECTION_STATES)


def from_psycopg(error: psycopg.Error) -> DatabaseError:
    """The pglock error for a psycopg error (kept as its ``__cause__`` by the caller)."""
    text = describe(error)
    state = error.sqlstate or ""
    if state.startswith("22") or state == "54000":
        return InvalidArgument(text, error)
    if state == "42501":
        return PermissionDenied(text, error)
    if is_connection_error(error):
        return ConnectionFailed(text, error)
    return DatabaseError(text, error)
