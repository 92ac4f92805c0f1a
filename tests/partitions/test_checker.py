"""Unit tests of the history checker: histories that must pass, and for each
violation it reports, one that must fail with it (and only it). The recorded
histories in histories/ are checked too: `pass-*.jsonl` must pass, every
`fail-<kind>-*.jsonl` must report <kind>.

    python3 -m unittest tests/partitions/test_checker.py
"""

from __future__ import annotations

import glob
import os
import sys
import unittest
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class History:
    """A history built by hand: clients with a lease of 10 s and a margin of 2.5 s."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def start(self, client: str, lease: float = 10.0, margin: float = 2.5) -> History:
        self.events.append({"client": client, "op": "start", "lang": "test", "lease": lease,
                            "period": margin, "margin": margin, "t": 0.0})
        return self

    def op(self, client: str, op: str, **fields: Any) -> History:
        self.events.append({"client": client, "op": op, **fields})
        return self

    def acquire(self, client: str, lock: str, invoke: float, complete: float, rvn: int,
                **extra: Any) -> History:
        return self.op(client, "acquire", lock=lock, invoke=invoke, complete=complete,
                       outcome="ok", rvn=rvn, **extra)

    def write(self, client: str, lock: str, at: float, token: int, seq: int,
              outcome: str = "ok") -> History:
        return self.op(client, "write", lock=lock, invoke=at, complete=at + 0.01,
                       outcome=outcome, token=token, seq=seq)

    def release(self, client: str, lock: str, invoke: float, rvn: int) -> History:
        return self.op(client, "release", lock=lock, invoke=invoke, complete=invoke + 0.01,
                       outcome="ok", rvn=rvn)

    def store(self, id_: int, resource: str, token: int, writer: str, seq: int) -> History:
        self.events.append({"source": "store", "id": id_, "resource": resource, "token": token,
                            "writer": writer, "seq": seq})
        return self

    def kinds(self) -> set[str]:
        return set(checker.check(self.events).counts())


def two_holders() -> History:
    """a holds L 1..4, renews once, releases; b takes it at 5 and releases at 8."""
    h = History().start("a").start("b")
    h.acquire("a", "L", 1.0, 1.1, 10).write("a", "L", 1.2, 10, 1).op("a", "renew", lock="L", t=3.0, rvn=12)
    h.write("a", "L", 3.1, 12, 2).release("a", "L", 4.0, 12)
    h.acquire("b", "L", 3.5, 5.0, 15).write("b", "L", 5.1, 15, 1).release("b", "L", 8.0, 15)
    h.store(1, "L", 10, "a", 1).store(2, "L", 12, "a", 2).store(3, "L", 15, "b", 1)
    return h


class Passing(unittest.TestCase):
    def test_two_holders_one_after_the_other(self) -> None:
        self.assertEqual(two_holders().kinds(), set())

    def test_a_takeover_after_a_loss_signal(self) -> None:
        h = History().start("a").start("b")
        h.acquire("a", "L", 0.0, 0.1, 10).op("a", "lost", lock="L", t=7.6, reason="deadline")
        h.acquire("b", "L", 1.0, 10.2, 11).release("b", "L", 11.0, 11)
        self.assertEqual(h.kinds(), set())

    def test_a_stale_write_refused_by_the_store_is_fine(self) -> None:
        h = two_holders()
        # a's write in flight when it lost the lock: invoked inside its hold,
        # refused by the store after b's token.
        h.write("a", "L", 3.9, 12, 3, outcome="fail")
        self.assertEqual(h.kinds(), set())

    def test_unknown_outcomes_are_not_holds(self) -> None:
        h = History().start("a").start("b")
        h.op("a", "acquire", lock="L", invoke=0.0, complete=1.0, outcome="unknown", error="reset")
        h.acquire("b", "L", 0.5, 0.6, 5).release("b", "L", 3.0, 5)
        self.assertEqual(h.kinds(), set())


class Failing(unittest.TestCase):
    def test_overlap(self) -> None:
        h = History().start("a").start("b")
        h.acquire("a", "L", 0.0, 0.1, 10).release("a", "L", 5.0, 10)
        h.acquire("b", "L", 0.0, 4.0, 11).release("b", "L", 6.0, 11)
        self.assertEqual(h.kinds(), {"overlap"})

    def test_holds_of_one_client_on_different_locks_do_not_overlap(self) -> None:
        h = History().start("a").start("b")
        h.acquire("a", "L", 0.0, 0.1, 10).release("a", "L", 5.0, 10)
        h.acquire("b", "M", 0.0, 0.2, 11).release("b", "M", 6.0, 11)
        self.assertEqual(h.kinds(), set())

    def test_told_of_the_loss_too_late(self) -> None:
        h = History().start("a")
        # Deadline 0.1 + 10 - 2.5 = 7.6; told at 8.0.
        h.acquire("a", "L", 0.0, 0.1, 10).op("a", "lost", lock="L", t=8.0, reason="deadline")
        self.assertEqual(h.kinds(), {"late"})

    def test_acting_past_the_deadline(self) -> None:
        h = History().start("a")
        h.acquire("a", "L", 0.0, 0.1, 10).write("a", "L", 7.9, 10, 1).release("a", "L", 8.0, 10)
        self.assertEqual(h.kinds(), {"late"})

    def test_acting_after_the_loss_signal(self) -> None:
        h = History().start("a")
        h.acquire("a", "L", 0.0, 0.1, 10).write("a", "L", 5.1, 10, 1).op("a", "lost", lock="L", t=5.0)
        self.assertEqual(h.kinds(), {"unheld-act"})

    def test_a_renewal_moves_the_deadline(self) -> None:
        h = History().start("a")
        h.acquire("a", "L", 0.0, 0.1, 10).op("a", "renew", lock="L", t=5.0, rvn=11)
        h.write("a", "L", 9.0, 11, 1).release("a", "L", 10.0, 11)
        self.assertEqual(h.kinds(), set())

    def test_acting_without_a_hold(self) -> None:
        h = History().start("a")
        h.write("a", "L", 1.0, 10, 1)
        self.assertEqual(h.kinds(), {"unheld-act"})

    def test_acting_with_a_token_not_of_the_hold(self) -> None:
        h = History().start("a")
        h.acquire("a", "L", 0.0, 0.1, 10).write("a", "L", 1.0, 9, 1).release("a", "L", 2.0, 10)
        self.assertEqual(h.kinds(), {"unheld-act"})

    def test_store_token_backwards(self) -> None:
        h = two_holders()
        h.write("a", "L", 3.2, 12, 3)
        h.store(4, "L", 12, "a", 3)  # after b's 15
        self.assertEqual(h.kinds(), {"store-backwards"})

    def test_store_write_acknowledged_and_lost(self) -> None:
        h = two_holders()
        h.write("b", "L", 5.5, 15, 2)  # acknowledged, not in the store
        self.assertEqual(h.kinds(), {"store-lost"})

    def test_store_keeps_a_write_its_client_saw_refused(self) -> None:
        h = two_holders()
        h.write("b", "L", 5.5, 15, 2, outcome="fail").store(4, "L", 15, "b", 2)
        self.assertEqual(h.kinds(), {"store-refused-kept"})

    def test_rvn_issued_twice(self) -> None:
        h = History().start("a").start("b")
        h.acquire("a", "L", 0.0, 0.1, 10).release("a", "L", 1.0, 10)
        h.acquire("b", "M", 0.0, 0.05, 10).release("b", "M", 1.0, 10)
        self.assertEqual(h.kinds(), {"rvn-twice"})

    def test_rvn_backwards_in_real_time(self) -> None:
        h = History().start("a").start("b")
        h.acquire("a", "L", 0.0, 0.1, 20).release("a", "L", 1.0, 20)
        h.acquire("b", "M", 2.0, 2.1, 15).release("b", "M", 3.0, 15)
        self.assertEqual(h.kinds(), {"rvn-backwards"})

    def test_concurrent_operations_may_get_rvns_in_any_order(self) -> None:
        h = History().start("a").start("b")
        h.acquire("a", "L", 0.0, 1.0, 20).release("a", "L", 2.0, 20)
        h.acquire("b", "M", 0.5, 1.5, 15).release("b", "M", 3.0, 15)
        self.assertEqual(h.kinds(), set())

    def test_ledger_write_lost(self) -> None:
        h = History().start("a")
        h.acquire("a", "L", 0.0, 0.1, 10, seq=1, server="n1")
        h.op("a", "heartbeat", lock="L", invoke=2.0, complete=2.1, outcome="ok", rvn=11, seq=2,
             server="n1")
        h.release("a", "L", 3.0, 11)
        h.events.append({"source": "ledger", "client": "a", "seq": 1, "op": "acquire", "name": "L",
                         "rvn": 10})
        self.assertEqual(h.kinds(), {"ledger-lost"})

    def test_lock_back_after_healing(self) -> None:
        h = History().start("a")
        h.acquire("a", "L", 0.0, 0.1, 10).op("a", "renew", lock="L", t=2.0, rvn=12)
        h.release("a", "L", 3.0, 12)
        h.events.append({"source": "final", "name": "L", "owner": "a", "rvn": 10, "released": False})
        self.assertEqual(h.kinds(), {"lock-back"})

    def test_isolated_primary_acknowledged(self) -> None:
        h = History().start("a")
        h.events.append({"source": "harness", "op": "fault", "t": 1.0, "what": "cut",
                         "minority_primary": "n1"})
        h.acquire("a", "L", 0.0, 0.1, 10, server="n1")  # before the cut: fine
        h.op("a", "heartbeat", lock="L", invoke=2.0, complete=2.5, outcome="ok", rvn=11, server="n1")
        h.op("a", "lost", lock="L", t=5.0)
        h.events.append({"source": "harness", "op": "heal", "t": 9.0})
        self.assertEqual(h.kinds(), {"isolated-ack"})


    def test_isolated_primary_acknowledged_on_the_wire(self) -> None:
        h = History().start("a")
        h.events.append({"source": "harness", "op": "fault", "t": 1.0, "what": "cut",
                         "minority_primary": "n1"})
        h.acquire("a", "L", 0.0, 0.1, 10).op("a", "renew", lock="L", t=4.0, rvn=11)
        h.events.append({"source": "wire", "client": "a", "server": "n1", "t": 1.2, "call": "acquire",
                         "rvns": [10]})  # an answer just after the cut: its commit was confirmed
        h.events.append({"source": "wire", "client": "a", "server": "n1", "t": 3.9,
                         "call": "heartbeat_many", "rvns": [11]})
        h.op("a", "lost", lock="L", t=5.0)
        h.events.append({"source": "harness", "op": "heal", "t": 9.0})
        self.assertEqual(h.kinds(), {"isolated-ack"})
        report = checker.check(h.events)
        self.assertEqual(len(report.violations), 1)
        self.assertIn("[11]", report.violations[0][1])

    def test_an_answer_the_client_threw_away_is_no_acknowledgement(self) -> None:
        h = History().start("a")
        h.events.append({"source": "harness", "op": "fault", "t": 1.0, "what": "cut",
                         "minority_primary": "n1"})
        h.acquire("a", "L", 0.0, 0.1, 10)
        # The reply to a renewal the client had abandoned: it never took RVN 11.
        h.events.append({"source": "wire", "client": "a", "server": "n1", "t": 3.9,
                         "call": "heartbeat_many", "rvns": [11]})
        h.op("a", "lost", lock="L", t=4.0, reason="not held")
        h.events.append({"source": "harness", "op": "heal", "t": 9.0})
        self.assertEqual(h.kinds(), set())


class Recorded(unittest.TestCase):
    """Histories recorded by real runs, kept as cases."""

    def test_recorded_histories(self) -> None:
        files = sorted(glob.glob(os.path.join(HERE, "histories", "*.jsonl")))
        for path in files:
            name = os.path.basename(path)
            with self.subTest(history=name):
                kinds = set(checker.check(checker.load(path)).counts())
                if name.startswith("pass-"):
                    self.assertEqual(kinds, set())
                else:
                    self.assertTrue(name.startswith("fail-"), name)
                    expected = name[len("fail-"):].split("--")[0]
                    self.assertIn(expected, kinds)


if __name__ == "__main__":
    unittest.main()
