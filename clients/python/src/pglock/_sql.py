"""The SQL the client sends, and its rows as Python values.

Every parameter has a cast, so the statements plan the same whatever psycopg
guesses for a Python value, and only built-in types travel (no type lookups,
which a pooler in transaction mode could not keep either). Intervals go out as
``make_interval(secs => float8)`` and come back as ``extract(epoch FROM ...)``:
seconds as floats, whatever the session's ``IntervalStyle``.
"""

from __future__ import annotations

from typing import Any

from ._types import Holder, LockInfo

ACQUIRE = """\
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data
  FROM pglock_acquire(%s::text, %s::text,
                      lease => make_interval(secs => %s::float8),
                      data => %s::bytea,
                      replace_data => %s::boolean,
                      observed_rvn => %s::bigint)"""

ACQUIRE_WAIT = """\
SELECT acquired, rvn, owner, extract(epoch FROM lease)::float8, data
  FROM pglock_acquire_wait(%s::text, %s::text,
                           lease => make_interval(secs => %s::float8),
                           data => %s::bytea,
                           replace_data => %s::boolean,
                           wait_timeout => make_interval(secs => %s::float8))"""

# The lease is left NULL: each lock keeps the lease its acquire gave it, which is
# the lease the client times that lock with.
HEARTBEAT_MANY = """\
SELECT name, rvn, renewed
  FROM pglock_heartbeat_many(%s::text, %s::text[], %s::bigint[])"""

RELEASE = """\
SELECT pglock_release(%s::text, %s::text, %s::bigint, keep => %s::boolean, data => %s::bytea)"""

GET = """\
SELECT name, owner, rvn, extract(epoch FROM lease)::float8, data, released
  FROM pglock_get(%s::text)"""

WATCH = """\
SELECT name, owner, rvn, extract(epoch FROM lease)::float8, data, released
  FROM pglock_watch(%s::text, %s::bigint, make_interval(secs => %s::float8))"""

HAS_WATCH = "SELECT to_regprocedure('pglock_watch(text,bigint,interval)') IS NOT NULL"

FENCE = "SELECT pglock_fence(%s::text, %s::text, %s::bigint)"

ACQUIRE_SLOT = """\
SELECT acquired, slot_name, rvn
  FROM pglock_acquire_slot(%s::text, %s::text, %s::integer,
                           lease => make_interval(secs => %s::float8),
                           data => %s::bytea,
                           wait_timeout => make_interval(secs => %s::float8))"""

# The slots of a semaphore as they are, in one round trip (after a refusal, to
# watch each holder's RVN).
GET_SLOTS = """\
SELECT g.name, g.owner, g.rvn, extract(epoch FROM g.lease)::float8, g.data, g.released
  FROM generate_series(1, %s::integer) AS k,
       LATERAL pglock_get(%s::text || '#' || k) AS g"""

Row = tuple[Any, ...]


def holder(row: Row) -> Holder:
    """The holder a refused acquire shows (``acquired, rvn, owner, lease, data``)."""
    return Holder(owner=row[2], rvn=row[1], lease=row[3], data=_bytes(row[4]))


def lock_info(row: Row) -> LockInfo:
    """A row of ``pglock_get``."""
    return LockInfo(
        name=row[0],
        owner=row[1],
        rvn=row[2],
        lease=row[3],
        data=_bytes(row[4]),
        released=row[5],
    )


def _bytes(value: Any) -> bytes | None:
    # psycopg loads bytea as bytes, or memoryview in some configurations.
    return None if value is None else bytes(value)
