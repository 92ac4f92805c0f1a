"""The renewer's decisions and the timing rule, without a server."""

from __future__ import annotations

import pglock._registry as registry
from pglock._timing import Timing
from pglock._types import LostReason


def held(name: str, rvn: int, timing: Timing, sent: float = 100.0) -> registry.Held:
    return registry.Held(name, "worker", rvn, None, timing, sent, None)


def test_the_margin_is_a_period_or_a_quarter_lease() -> None:
    short = Timing.of(20.0, 2.0, 0.5)
    assert short.margin == 2.0 and short.lost_at(0.0) == 18.0
    long = Timing.of(20.0, 10.0, 0.5)
    assert long.margin == 5.0 and long.lost_at(0.0) == 15.0
    capped = Timing.of(20.0, 30.0, 0.5)
    assert capped.period == 10.0, "at most half the lease"
    assert Timing.of(9.0, None, 0.5).period == 3.0
    for lease, period in [(1.0, 0.001), (1.0, 0.25), (1.0, 0.251), (1.0, 0.5), (7.0, 3.0)]:
        t = Timing.of(lease, period, 0.5)
        assert t.lost_at(0.0) < lease
        assert t.lost_at(0.0) - t.period >= lease / 4 - 1e-9


def test_locks_due_within_half_a_period_share_a_call() -> None:
    t = Timing.of(10.0, 1.0, 0.5)
    r = registry.Registry()
    r.insert(held("a", 1, t), 0.0)
    r.insert(held("b", 2, t), 0.5)
    r.insert(held("c", 3, t), 0.501)
    assert r.plan(0.999) == registry.Sleep(1.0)
    plan = r.plan(1.0)
    assert isinstance(plan, registry.Renew)
    assert [m.held.name for m in plan.members] == ["a", "b"]
    assert all(m.held.in_call for m in plan.members)
    refused = r.settle(plan.members, 1.0, [("a", 9, True), ("b", 10, True)], 1.0)
    assert refused == [] and not any(m.held.in_call for m in plan.members)
    assert r.plan(1.0) == registry.Sleep(1.501)
    plan = r.plan(1.501)
    assert isinstance(plan, registry.Renew)
    assert [m.held.name for m in plan.members] == ["c", "a", "b"]


def test_a_lock_not_renewed_is_lost_at_once_and_a_failed_call_is_retried() -> None:
    t = Timing.of(10.0, 1.0, 0.5)
    r = registry.Registry()
    a, b = held("a", 1, t, 0.0), held("b", 2, t, 0.0)
    r.insert(a, 0.0)
    r.insert(b, 0.0)
    plan = r.plan(1.0)
    assert isinstance(plan, registry.Renew)
    assert r.settle(plan.members, 1.0, "connection closed", 1.0) == []
    assert r.plan(1.0) == registry.Sleep(1.5)
    plan = r.plan(1.5)
    assert isinstance(plan, registry.Renew)
    refused = r.settle(plan.members, 1.5, [("a", None, False), ("b", 5, True)], 1.5)
    assert [m.held.name for m in refused] == ["a"]
    assert a.reason is LostReason.NOT_HELD and a.check(1.5)
    assert b.rvn == 5 and not b.check(1.5)
    assert list(r.entries) == [1]


def test_a_lock_is_lost_at_its_deadline_and_stays_lost() -> None:
    t = Timing.of(1.0, 0.4, 0.5)
    h = held("a", 1, t, 0.0)
    deadline = t.lost_at(0.0)
    assert not h.check(deadline - 0.001)
    assert h.check(deadline)
    assert h.reason is LostReason.HEARTBEATS_FAILED
    assert not h.renewed(7, 0.5), "a renewal after the deadline does not revive it"
    assert h.rvn == 1


def test_a_name_held_twice_waits_for_the_next_call_and_fences_hold_renewals() -> None:
    t = Timing.of(10.0, 1.0, 0.5)
    r = registry.Registry()
    r.insert(held("a", 1, t), 0.0)
    r.insert(held("a", 7, t), 0.0)
    fenced = held("f", 3, t)
    fenced.fencing = 1
    r.insert(fenced, 0.0)
    plan = r.plan(1.0)
    assert isinstance(plan, registry.Renew)
    assert [m.held.name for m in plan.members] == ["a"]


def test_a_call_takes_at_most_the_servers_limit() -> None:
    t = Timing.of(10.0, 1.0, 0.5)
    r = registry.Registry()
    for index in range(registry.MAX_HEARTBEAT_MANY + 1):
        r.insert(held(f"lock-{index}", 1, t), 0.0)
    plan = r.plan(1.0)
    assert isinstance(plan, registry.Renew)
    assert len(plan.members) == registry.MAX_HEARTBEAT_MANY
