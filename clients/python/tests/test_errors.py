"""Bad arguments are answered by the server, with its SQLSTATE, message, DETAIL and
HINT, mapped to the package's exceptions; the client checks nothing itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import pglock
from conftest import dsn_for, login_role, unique

BIG = b"x" * (1024 * 1024 + 1)


@pytest.mark.parametrize(
    ("call", "sqlstate"),
    [
        pytest.param(lambda c: c.acquire("", blocking=False), "22023", id="empty name"),
        pytest.param(lambda c: c.acquire("x" * 256, blocking=False), "22001", id="long name"),
        pytest.param(lambda c: c.acquire(unique("l"), lease=0), "22023", id="zero lease"),
        pytest.param(lambda c: c.acquire(unique("l"), lease=-1), "22023", id="negative lease"),
        pytest.param(lambda c: c.acquire(unique("l"), lease=86401), "22023", id="over a day"),
        pytest.param(lambda c: c.acquire(unique("l"), data=BIG), "54000", id="over 1 MiB"),
        pytest.param(lambda c: c.acquire_slot(unique("s"), 0), "22023", id="no slots"),
        pytest.param(lambda c: c.acquire_slot(unique("s"), 1001), "22023", id="too many slots"),
        pytest.param(lambda c: c.get(""), "22023", id="get of an empty name"),
    ],
)
def test_bad_arguments_raise_the_servers_sqlstate(
    dsn: str, call: Callable[[pglock.Client], object], sqlstate: str
) -> None:
    with pglock.Client(dsn) as client:
        with pytest.raises(pglock.InvalidArgument) as raised:
            call(client)
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
