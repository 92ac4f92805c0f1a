"""pglock for Python: lease-based distributed locks kept in PostgreSQL.

A client on psycopg 3 for the pglock extension, with the same API for threads
(:class:`Client`) and asyncio (:class:`AsyncClient`). Waits happen in the server
(``pglock_acquire_wait``); one background thread or task per client renews every
lock it holds in one ``pglock_heartbeat_many`` call per period, and signals a lock
lost before any rival could take it over. A lock's RVN is its fencing token.
"""

from ._async import AsyncClient, AsyncElection, AsyncLock, AsyncLostSignal
from ._errors import (
    ConnectionFailed,
    DatabaseError,
    InvalidArgument,
    LockLost,
    NotAcquired,
    NotHeld,
    PermissionDenied,
    PglockError,
)
from ._sync import Client, Election, Lock, LostSignal
from ._types import Holder, LockInfo, LostReason

__all__ = [
    "AsyncClient",
    "AsyncElection",
    "AsyncLock",
    "AsyncLostSignal",
    "Client",
    "ConnectionFailed",
    "DatabaseError",
    "Election",
    "Holder",
    "InvalidArgument",
    "Lock",
    "LockInfo",
    "LockLost",
    "LostReason",
    "LostSignal",
    "NotAcquired",
    "NotHeld",
    "PermissionDenied",
    "PglockError",
]

__version__ = "0.1.0"
