"""When a held lock is renewed, retried, and declared lost.

The rule is the Rust client's (its rustdoc, "When a lock is lost"), stated once
for both clients in the README: with ``renewed`` the monotonic instant just
before the request of the last successful acquire or renewal was sent,

* safe until ``renewed + lease``: a rival must watch the RVN written after
  ``renewed`` stand still for a whole lease;
* lost at ``renewed + lease - margin``, ``margin = min(period, lease / 4)``, if no
  renewal has succeeded by then;
* lost at once when ``pglock_heartbeat_many`` answers ``renewed = false``;
* anything else is transient, retried every ``min(poll_interval, period)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """The schedule of one lock: its lease, heartbeat period and retry interval (seconds)."""

    lease: float
    period: float
    retry: float

    @classmethod
    def of(cls, lease: float, period: float | None, poll_interval: float) -> Timing:
        """The timing of a lock of ``lease``: ``period`` (default a third of the lease)
        is at most half the lease, so the first renewal leaves a quarter lease for retries."""
        chosen = lease / 3 if period is None else min(period, lease / 2)
        return cls(lease=lease, period=chosen, retry=min(poll_interval, chosen))

    @property
    def margin(self) -> float:
        """How long before the lease could run out a silent lock is declared lost."""
        return min(self.period, self.lease / 4)

    @property
    def early(self) -> float:
        """How far ahead of its time a lock may be renewed, to share a call: half a period."""
        return self.period / 2

    def lost_at(self, renewed: float) -> float:
        """When a lock last renewed at ``renewed`` is lost unless renewed again."""
        return renewed + self.lease - self.margin

    def give_up_at(self, sent: float, lost_at: float) -> float:
        """When a renewal sent at ``sent`` is abandoned, for locks lost at ``lost_at`` latest."""
        return min(sent + self.period, lost_at)
