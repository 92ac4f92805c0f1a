"""What the client's renewer knows: each acquisition's state, and the schedule of
the locks it renews, as plain logic without I/O (the sync and asyncio clients
share it, and its decisions are tested without a server).

A lock is registered when acquired and leaves the registry when it is released
or lost. Each lock keeps its own schedule and deadline (see :mod:`._timing`). A
call goes out when the earliest lock is due and takes along every lock due
within half of its own period: renewed early, never late. Locks taken at
different times so fall into step within a period or two. One call renews at
most :data:`MAX_HEARTBEAT_MANY` locks (the server's limit); more go in the calls
that follow at once.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ._errors import LockLost
from ._timing import Timing
from ._types import LostReason

MAX_HEARTBEAT_MANY = 10_000
"""The most names ``pglock_heartbeat_many`` takes in one call."""

LostCallback = Callable[[LockLost], object]


class Held:
    """One acquisition of a lock, shared by its handle, the renewer and its loss signal.

    Once *over* (lost, or released) it stays over. A deadline that passes makes
    it lost the moment anyone looks (:meth:`check`), so the loss signal is never
    late, whatever the renewer is doing.
    """

    def __init__(
        self,
        name: str,
        owner: str,
        rvn: int,
        data: bytes | None,
        timing: Timing,
        sent: float,
        on_lost: LostCallback | None,
    ) -> None:
        self.name = name
        self.owner = owner
        self.data = data
        self.timing = timing
        self._mutex = threading.Lock()
        self._rvn = rvn
        self._deadline = timing.lost_at(sent)
        self._over = False
        self._reason: LostReason | None = None
        self._detail: str | None = None
        self._on_lost = on_lost
        self._callback_fired = False
        self._listeners: list[Callable[[], None]] = []
        # Guarded by the renewer's lock, not by _mutex:
        self.in_call = False
        self.fencing = 0

    def __repr__(self) -> str:
        state = "held" if not self.check() else (self._reason or "released")
        return f"<Held {self.name!r} rvn={self._rvn} {state}>"

    @property
    def rvn(self) -> int:
        """The latest RVN: the fencing token, which changes with every renewal."""
        with self._mutex:
            return self._rvn

    @property
    def deadline(self) -> float:
        """When the lock is lost unless renewed (monotonic seconds)."""
        with self._mutex:
            return self._deadline

    @property
    def renewed_at(self) -> float:
        """When the request of the last successful acquire or renewal was sent."""
        with self._mutex:
            return self._deadline - (self.timing.lease - self.timing.margin)

    @property
    def reason(self) -> LostReason | None:
        """Why it was lost; ``None`` while held or once released."""
        with self._mutex:
            return self._reason

    @property
    def detail(self) -> str | None:
        """The last renewal error, or what the server said, for a lost lock."""
        with self._mutex:
            return self._detail

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Calls ``listener`` once the acquisition is over (at once if it is)."""
        with self._mutex:
            if not self._over:
                self._listeners.append(listener)
                return
        listener()

    def check(self, now: float | None = None) -> bool:
        """Whether the acquisition is over; a deadline passed makes it lost now."""
        with self._mutex:
            if self._over:
                return True
            if (time.monotonic() if now is None else now) < self._deadline:
                return False
            listeners = self._end(LostReason.HEARTBEATS_FAILED, self._detail)
        _call(listeners)
        return True

    def renewed(self, rvn: int, sent: float, now: float | None = None) -> bool:
        """Records a renewal sent at ``sent``; ``False`` if the lock was lost meanwhile
        (it then keeps the RVN it had: its release fails, as the loss said)."""
        with self._mutex:
            if self._over:
                return False
            if (time.monotonic() if now is None else now) >= self._deadline:
                listeners = self._end(LostReason.HEARTBEATS_FAILED, self._detail)
            else:
                self._rvn = rvn
                self._deadline = self.timing.lost_at(sent)
                self._detail = None
                return True
        _call(listeners)
        return False

    def failed(self, error: str) -> None:
        """Notes the error of a renewal that failed, for the loss's message."""
        with self._mutex:
            if not self._over:
                self._detail = error

    def lose(self, reason: LostReason, detail: str | None = None) -> bool:
        """Ends the acquisition as lost; ``True`` for the call that ended it."""
        with self._mutex:
            if self._over:
                return False
            listeners = self._end(reason, detail)
        _call(listeners)
        return True

    def finish(self) -> bool:
        """Ends the acquisition as released; ``False`` if it was already over."""
        with self._mutex:
            if self._over:
                return False
            listeners = self._end(None, None)
        _call(listeners)
        return True

    def narrow_to_other_role(self) -> None:
        """A loss read as not held turns out to be another role's lock."""
        with self._mutex:
            if self._reason is LostReason.NOT_HELD:
                self._reason = LostReason.HELD_BY_OTHER_ROLE

    def error(self) -> LockLost:
        """The :class:`LockLost` of this (lost) acquisition."""
        with self._mutex:
            reason = self._reason or LostReason.NOT_HELD
            return LockLost(self.name, reason, self._detail)

    def callback_due(self) -> Callable[[], None] | None:
        """The loss callback, the first time it is asked for after a loss."""
        with self._mutex:
            if self._callback_fired or self._reason is None:
                return None
            self._callback_fired = True
            callback = self._on_lost
        if callback is None:
            return None
        error = self.error()

        def fire() -> None:
            callback(error)

        return fire

    def _end(self, reason: LostReason | None, detail: str | None) -> list[Callable[[], None]]:
        self._over = True
        self._reason = reason
        self._detail = detail
        listeners, self._listeners = self._listeners, []
        return listeners


def _call(listeners: list[Callable[[], None]]) -> None:
    for listener in listeners:
        listener()


@dataclass
class Entry:
    """A lock being renewed."""

    held: Held
    renewed: float
    """When the request of the last successful acquire or renewal was sent."""
    next: float
    """When to send the next renewal."""


@dataclass
class Member:
    """A lock in a call, and the RVN the call presents for it."""

    key: int
    held: Held
    rvn: int
    lost_at: float


@dataclass
class Renew:
    """Send one ``pglock_heartbeat_many`` for these locks."""

    members: list[Member]


@dataclass
class Sleep:
    """Nothing due before ``until`` (monotonic seconds)."""

    until: float


@dataclass
class Idle:
    """Nothing is held: the renewer ends."""


Plan = Renew | Sleep | Idle


@dataclass
class Registry:
    """The locks a client renews. Not thread-safe: the renewer guards it."""

    entries: dict[int, Entry] = field(default_factory=dict)
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    def insert(self, held: Held, sent: float) -> int:
        """Starts renewing ``held``, acquired by a request sent at ``sent``."""
        key = next(self._keys)
        self.entries[key] = Entry(held=held, renewed=sent, next=sent + held.timing.period)
        return key

    def remove(self, key: int) -> bool:
        """Stops renewing the lock ``key``."""
        return self.entries.pop(key, None) is not None

    def expire(self, now: float) -> list[Held]:
        """Drops (and returns) every lock that is over: lost at its deadline, or otherwise."""
        gone = [key for key, entry in self.entries.items() if entry.held.check(now)]
        return [self.entries.pop(key).held for key in gone]

    def next_deadline(self) -> float | None:
        """The earliest deadline of the locks held."""
        return min((entry.held.deadline for entry in self.entries.values()), default=None)

    def plan(self, now: float) -> Plan:
        """What to do at ``now``; call :meth:`expire` first.

        The locks chosen are marked as in a call before the caller lets the
        registry go, so a release that finds one gone knows to wait for the call.
        """
        deadline = self.next_deadline()
        if deadline is None:
            return Idle()

        def ready(entry: Entry) -> bool:
            # No attempt at or after the lock's deadline (it is lost then), and
            # none while its holder sends a fence (which needs the current RVN).
            return entry.next < entry.held.deadline and entry.held.fencing == 0

        earliest = min((e.next for e in self.entries.values() if ready(e)), default=None)
        if earliest is None:
            return Sleep(deadline)
        if earliest > now:
            return Sleep(min(earliest, deadline))
        due = sorted(
            (
                (entry.next, key, entry)
                for key, entry in self.entries.items()
                if ready(entry) and entry.next <= now + entry.held.timing.early
            ),
            key=lambda item: (item[0], item[1]),
        )
        # pglock refuses a name twice in one call (22023), which would fail the
        # call for every lock in it: a second lock of one name waits its turn.
        names: set[str] = set()
        members: list[Member] = []
        for _, key, entry in due:
            if entry.held.name in names:
                continue
            names.add(entry.held.name)
            entry.held.in_call = True
            members.append(Member(key, entry.held, entry.held.rvn, entry.held.deadline))
            if len(members) == MAX_HEARTBEAT_MANY:
                break
        return Renew(members)

    def settle(
        self,
        members: list[Member],
        sent: float,
        rows: list[tuple[str, int | None, bool]] | str,
        now: float,
    ) -> list[Member]:
        """Records the outcome of a call sent at ``sent``: its rows, or its error as text.

        Locks the server did not renew leave the registry, lost at once
        (:attr:`LostReason.NOT_HELD`): a rival may hold them already. Returns
        them, for the lookup that tells whether another role holds them. A
        failed call is retried after ``retry`` for each lock.
        """
        refused: list[Member] = []
        for index, member in enumerate(members):
            member.held.in_call = False
            entry = self.entries.get(member.key)
            row = rows[index] if not isinstance(rows, str) and index < len(rows) else None
            if isinstance(rows, str) or row is None or row[0] != member.held.name:
                error = rows if isinstance(rows, str) else "no row for this lock"
                member.held.failed(error)
                if entry is not None:
                    entry.next = now + member.held.timing.retry
                continue
            _, rvn, renewed = row
            if renewed and rvn is not None:
                if member.held.renewed(rvn, sent, now) and entry is not None:
                    entry.renewed = sent
                    entry.next = sent + member.held.timing.period
                continue
            self.entries.pop(member.key, None)
            if member.held.lose(LostReason.NOT_HELD):
                refused.append(member)
        return refused
