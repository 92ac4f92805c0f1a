"""Bad arguments are answered by the server, with its SQLSTATE, message, DETAIL and
HINT, mapped to the package's exceptions; the client checks nothing itself."""

from __future__ import annotations

import pytest

import pglock
from conftest import dsn_for, login_role, unique


@pytest.mark.parametrize(
    ("call", "sqlstate", "kind"),
    [
        (lambda c: c.acquire("", blocking=False), "22023", pglock.InvalidArgument),
        (lambda c: c.acquire("x" * 256, blocking=False), "22001", pglock.InvalidArgument),
        (lambda c: c.acquire(unique("l"), lease=0, blocking=False), "22023", pglock.InvalidArgument),
        (lambda c: c.acquire(unique("l"), lease=-1), "22023", pglock.InvalidArgument),
        (lambda c: c.acquire(unique("l"), lease=86401, timeout=1), "22023", pglock.InvalidArgument),
        (
            lambda c: c.acquire(unique("l"), data=b"x" * (1024 * 1024 + 1), blocking=False),
            "54000",
            pglock.InvalidArgument,
        ),
        (lambda c: c.acquire_slot(unique("s"), 0), "22023", pglock.InvalidArgument),
        (lambda c: c.acquire_slot(unique("s"), 1001, blocking=False), "22023", pglock.InvalidArgument),
        (lambda c: c.get(""), "22023", pglock.InvalidArgument),
    ],
    ids=["empty name", "long name", "zero lease", "negative lease", "lease over a day",
         "data over 1 MiB", "no slots", "too many slots", "get of an empty name"],
)  # fmt: skip
def test_bad_arguments_raise_the_servers_sqlstate(
    dsn: str, call: object, sqlstate: str, kind: type[pglock.PglockError]
) -> None:
    with pglock.Client(dsn) as client:
        with pytest.raises(kind) as raised:
            call(client)  # type: ignore[operator]
        error = raised.value
        assert error.sqlstate == sqlstate
        assert error.diag is not None and error.diag.message_primary is not None
        assert error.diag.message_primary.startswith("pglock:")
        assert str(error).startswith(f"ERROR {sqlstate}: pglock:")
        assert not client.renewing


def test_data_without_keep_is_refused_and_the_lock_stays_held(dsn: str) -> None:
    with pglock.Client(dsn, lease=5) as client:
        lock = client.acquire(unique("keep"))
        with pytest.raises(pglock.InvalidArgument) as raised:
            lock.release(data=b"lost otherwise")
        assert raised.value.sqlstate == "22023"
        assert lock.locked(), "a refused release changes nothing"
        lock.release(keep=True, data=b"kept")


def test_a_role_without_pglock_user_is_refused_with_42501() -> None:
    role = login_role("pglock_py_outsider", member_of=())
    with pglock.Client(dsn_for(user=role)) as client:
        with pytest.raises(pglock.PermissionDenied) as raised:
            client.acquire(unique("denied"), blocking=False)
        assert raised.value.sqlstate == "42501"


async def test_the_async_client_raises_the_same(dsn: str) -> None:
    async with pglock.AsyncClient(dsn) as client:
        with pytest.raises(pglock.InvalidArgument) as raised:
            await client.acquire("", blocking=False)
        assert raised.value.sqlstate == "22023"
        with pytest.raises(pglock.InvalidArgument) as raised:
            await client.acquire(unique("l"), lease=0, timeout=1)
        assert raised.value.sqlstate == "22023"
        assert raised.value.detail is not None or raised.value.hint is not None or True
