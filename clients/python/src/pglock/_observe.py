"""What a client has seen of the locks it could not get: per lock name, the
holder's RVN, its lease, and since when that RVN stood still.

Time runs from the moment a refusal's reply *arrived* (monotonic clock): the
holder wrote its RVN before the server read it for us, so the holder's lease
had started by then and a takeover cannot come early. A later attempt passes
the RVN as ``observed_rvn`` once it stood still for the holder's whole lease:
that is how a client takes over a dead holder's lock, the server's own waits
(``pglock_acquire_wait``) aside.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Watch:
    """A holder's RVN, its lease (seconds) and when the RVN was first seen."""

    rvn: int
    lease: float
    since: float


class Observations:
    """The watches of one client, by lock name; safe to share between threads."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._by_name: dict[str, Watch] = {}

    def takeover_rvn(self, name: str, now: float) -> int | None:
        """The RVN to pass as ``observed_rvn`` at ``now``, once it stood still for its lease."""
        with self._mutex:
            watch = self._by_name.get(name)
        if watch is None or now < watch.since + watch.lease:
            return None
        return watch.rvn

    def refused(self, name: str, rvn: int | None, lease: float | None, now: float) -> None:
        """Notes a refusal that arrived at ``now`` showing ``rvn`` with ``lease``.

        A refusal that shows no holder (NULLs: reserved for a queued waiter, or
        being created) tells nothing and changes nothing.
        """
        if rvn is None or lease is None:
            return
        with self._mutex:
            seen = self._by_name.get(name)
            if seen is not None and seen.rvn == rvn:
                return
            self._by_name[name] = Watch(rvn=rvn, lease=lease, since=now)

    def next_takeover(self, name: str) -> float | None:
        """When the watched RVN of ``name`` will have stood still for its lease."""
        with self._mutex:
            watch = self._by_name.get(name)
        return None if watch is None else watch.since + watch.lease

    def forget(self, name: str) -> None:
        """Forgets a lock, once acquired."""
        with self._mutex:
            self._by_name.pop(name, None)
