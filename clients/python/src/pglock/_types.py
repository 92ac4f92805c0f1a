"""Values the client hands out: what a refusal shows of a holder, a lock as read,
why a lock was lost, and lock data as bytes or JSON."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["Holder", "LockInfo", "LostReason", "Seconds", "decode_json", "encode_data"]

Seconds = float | int | timedelta
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""


def seconds(value: Seconds) -> float:
    """``value`` in seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET
"""No ``data_json`` given (``None`` is a JSON value: ``null``)."""


def encode_data(data: bytes | None, data_json: Any) -> bytes | None:
    """The bytes to store for ``data`` or ``data_json`` (JSON text in UTF-8), at most one."""
    if data_json is UNSET:
        return None if data is None else bytes(data)
    if data is not None:
        raise TypeError("give data or data_json, not both")
    return json.dumps(data_json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_json(data: bytes | None) -> Any:
    """Lock data read as JSON (``None`` when there is none)."""
    return None if data is None else json.loads(data.decode("utf-8"))


class LostReason(enum.Enum):
    """Why a lock stopped being held before it was released."""

    NOT_HELD = "not_held"
    """The server says this client no longer holds it at its RVN: taken over,
    force-released, or a renewal's reply was lost and the RVN moved on without us."""

    HELD_BY_OTHER_ROLE = "held_by_other_role"
    """The lock's row shows our owner and RVN, but another database role holds it."""

    HEARTBEATS_FAILED = "heartbeats_failed"
    """No renewal got through before ``renewed + lease - margin``, so a rival might
    soon take it over (see the timing rule in the README)."""

    CLIENT_CLOSED = "client_closed"
    """The client was closed while the lock was held; it released the lock."""

    def describe(self) -> str:
        """A sentence for messages."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    LostReason.NOT_HELD: "the server says it is no longer held at our RVN",
    LostReason.HELD_BY_OTHER_ROLE: "another database role holds it",
    LostReason.HEARTBEATS_FAILED: "no renewal succeeded before the safety deadline",
    LostReason.CLIENT_CLOSED: "the client was closed",
}


@dataclass(frozen=True)
class Holder:
    """The holder of a lock, as a refused acquire shows it.

    Any field may be ``None``: a lock reserved for a waiter queued in the server,
    or being created by a transaction that has not committed, shows nobody.
    ``data`` is ``None`` unless the holder is of the caller's database role.
    """

    owner: str | None
    rvn: int | None
    lease: float | None
    """The holder's lease in seconds: how long its RVN must stand still before a takeover."""
    data: bytes | None = None

    def data_json(self) -> Any:
        """The holder's data read as JSON."""
        return decode_json(self.data)


@dataclass(frozen=True)
class LockInfo:
    """A lock as ``pglock_get`` shows it."""

    name: str
    owner: str
    rvn: int
    """The lock's current record version number."""
    lease: float
    """The lease its holder asked for, in seconds."""
    data: bytes | None
    """``None`` unless the holder is of the caller's database role."""
    released: bool
    """Released with ``keep => true``: free to take, data kept."""

    def data_json(self) -> Any:
        """The lock's data read as JSON."""
        return decode_json(self.data)
