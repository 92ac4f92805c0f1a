"""Pieces both clients' connection handling shares: how a client opens its own
connections, how long it backs off after failing to, and the options it was given."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

FIRST_BACKOFF = 0.05
"""The first wait between two failed attempts to connect; it doubles up to a cap."""

APPLICATION_NAME = "pglock-client"


def default_owner() -> str:
    """An owner label unique to this client: host, process and a random part."""
    host = socket.gethostname()[:200]
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


def own_conninfo(conninfo: str) -> str:
    """The connection string for connections the client opens: the caller's,
    with an ``application_name`` and a ``connect_timeout`` unless it has them."""
    params: dict[str, Any] = conninfo_to_dict(conninfo)
    extra: dict[str, Any] = {}
    if "application_name" not in params and "PGAPPNAME" not in os.environ:
        extra["application_name"] = APPLICATION_NAME
    if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
        extra["connect_timeout"] = 5
    return make_conninfo(conninfo, **extra)


@dataclass
class Backoff:
    """Failed attempts to connect since the last success (one attempt at a time)."""

    cap: float
    failures: int = 0
    next_at: float = 0.0

    def failed(self, now: float) -> None:
        """Notes a failed attempt at ``now``: the next waits twice as long, up to the cap."""
        wait = min(self.cap, FIRST_BACKOFF * (2**self.failures))
        self.failures += 1
        self.next_at = now + wait

    def succeeded(self) -> None:
        """Notes a connection made."""
        self.failures = 0
        self.next_at = 0.0


@dataclass(frozen=True)
class Options:
    """A client's settings (see :class:`pglock.Client`)."""

    owner: str
    lease: float
    period: float | None
    poll_interval: float
    server_wait: float
    prepare: bool | None
    """``False`` sends every statement unprepared (PgBouncer in transaction mode)."""

    def __post_init__(self) -> None:
        # The client's own timing options; the server checks everything it is sent.
        if self.period is not None and not self.period > 0:
            raise ValueError(f"period must be more than 0 seconds, not {self.period}")
        if not self.poll_interval > 0:
            raise ValueError(
                f"poll_interval must be more than 0 seconds, not {self.poll_interval}"
            )
        if not self.server_wait >= 0:
            raise ValueError(f"server_wait must be 0 seconds or more, not {self.server_wait}")
