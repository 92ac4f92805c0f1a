#!/usr/bin/env python3
"""The history checker of the fault tests.

    checker.py HISTORY.jsonl...     check each file; print its summary and violations
                                    (exit 1 if any file has a violation)

A history is one JSON object per line, in any order across sources:

* client operations, each with "client" and "op" (see clients/rust/examples/
  partition_worker.rs): start (lease, period, margin), acquire, renew, heartbeat,
  lost, write, release, stop. Times ("invoke", "complete", "t") are
  CLOCK_MONOTONIC seconds of the machine. Outcomes are "ok", "fail" (known not
  to have happened) or "unknown".
* {"source": "store", "id", "resource", "token", "writer", "seq"}: a write the
  fenced store accepted, in the order it accepted them (id).
* {"source": "ledger", "client", "seq", "op", "name", "rvn"}: a lock write in the
  cluster's ledger after healing (written by the same statement as the write).
* {"source": "final", "name", "owner", "rvn", "released"}: the lock table on the
  primary after healing.
* {"source": "wire", "client", "server", "t", "call", "rvns"}: RVNs a reply
  forwarded to the client acknowledged, seen by the fault proxy, with the
  server's address: which node acknowledged what, for every client.
* {"source": "harness", "op": "fault" | "heal", "t", "what", ...}: faults
  injected; a fault with "minority_primary": ADDRESS says that this primary was
  cut off from its standbys until the next heal.

A client's hold of a lock is confirmed from the completion of the acquire that
returned it until it was told the lock was lost ("lost" at t), or it began to
release it, or it stopped. The checker reports:

overlap             two clients' confirmed holds of one lock overlap in time
late                a client acted on a lock, or was told of its loss, after its
                    own rule's deadline: last confirmation + lease - margin (the
                    confirmation's completion bounds the instant the request was
                    sent, so this is a necessary condition of the rule)
unheld-act          a write under a lock outside any confirmed hold of it, or with a
                    token that is not one of the hold's RVNs
store-backwards     the fenced store accepted, for one resource, a smaller token
                    after a larger one
store-lost          a write a client was told was accepted is not in the store
store-refused-kept  the store holds a write its client was told was refused
rvn-twice           one RVN issued to two operations
rvn-backwards       an operation invoked after another one completed got a smaller RVN
ledger-lost         an acknowledged lock write is missing from the ledger after healing
lock-back           after healing, a lock is at an RVN below one acknowledged for it
isolated-ack        a primary cut off from its standbys acknowledged a lock write
                    requested after the cut, or (seen on the wire) any lock write
                    more than ACK_GRACE after the cut: a commit that its standby
                    confirmed before the cut has answered by then
"""

from __future__ import annotations

import bisect
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# How late, past its deadline, a client may notice its loss: the time its loss
# signal takes to reach the worker's recorder (a task, a thread) on a busy machine.
SLACK = 0.2
# How long after a cut an honest commit's answer may still arrive.
ACK_GRACE = 1.0


@dataclass
class Hold:
    client: str
    lock: str
    start: float
    rvns: list[int]
    confirms: list[float]
    lease: float
    margin: float
    end: float | None = None
    how: str = ""
    writes: int = 0

    def deadline_at(self, t: float) -> float:
        """The rule's deadline for something done at t: the last confirmation
        before t, plus lease - margin."""
        index = bisect.bisect_right(self.confirms, t) - 1
        last = self.confirms[max(index, 0)]
        return last + self.lease - self.margin

    def describe(self) -> str:
        end = f"{self.end:.3f}" if self.end is not None else "?"
        return (f"{self.client} held {self.lock!r} {self.start:.3f} .. {end} ({self.how}; "
                f"rvns {self.rvns[0]}..{self.rvns[-1]})")


@dataclass
class Report:
    violations: list[tuple[str, str]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, text: str) -> None:
        self.violations.append((kind, text))

    def counts(self) -> Counter[str]:
        return Counter(kind for kind, _ in self.violations)


def time_of(event: dict[str, Any]) -> float:
    for key in ("invoke", "t", "complete"):
        if key in event:
            return float(event[key])
    return 0.0


def check(events: list[dict[str, Any]]) -> Report:
    report = Report()
    clients: dict[str, list[dict[str, Any]]] = defaultdict(list)
    store: list[dict[str, Any]] = []
    ledger: dict[tuple[str, int], dict[str, Any]] = {}
    final: dict[str, dict[str, Any]] = {}
    harness: list[dict[str, Any]] = []
    wire: list[dict[str, Any]] = []
    for event in events:
        source = event.get("source")
        if source == "store":
            store.append(event)
        elif source == "ledger":
            ledger[(event["client"], int(event["seq"]))] = event
        elif source == "final":
            final[event["name"]] = event
        elif source == "wire":
            wire.append(event)
        elif source == "harness" or event.get("client") == "harness":
            harness.append(event)
        elif "client" in event and "op" in event:
            clients[event["client"]].append(event)
    # Each client's operations in the order they began (a loss signal at the
    # moment it fired), ties in the order they were recorded.
    for history in clients.values():
        order = {id(event): index for index, event in enumerate(history)}
        history.sort(key=lambda event: (time_of(event), order[id(event)]))

    holds, writes = build_holds(clients, report)
    check_overlaps(holds, report)
    check_store(store, writes, report)
    issued = check_rvns(clients, report)
    check_ledger(clients, ledger, report)
    check_final(issued, final, report)
    check_isolated(clients, harness, wire, report)

    ops = Counter()
    outcomes = Counter()
    langs = {}
    for name, history in clients.items():
        for event in history:
            ops[event["op"]] += 1
            if "outcome" in event:
                outcomes[f"{event['op']}:{event['outcome']}"] += 1
            if event["op"] == "start":
                langs[name] = event.get("lang", "?")
    losses = Counter(h.how for h in holds if h.how.startswith("lost"))
    acks = sorted({float(e["t"]) for e in wire} | {
        float(e.get("complete", e.get("t", 0))) for h in clients.values() for e in h
        if e["op"] == "renew" or (e["op"] in ("acquire", "heartbeat", "release") and e.get("outcome") == "ok")})
    effects = fault_effects(holds, harness, acks)
    lateness = [h.end - h.deadline_at(h.end) for h in holds if h.end is not None]
    report.stats = {
        "clients": dict(Counter(langs.values())),
        "operations": sum(ops.values()) - ops["start"] - ops["stop"],
        "by_op": dict(sorted(outcomes.items())),
        "holds": len(holds),
        "lost": sum(losses.values()),
        "store_writes_accepted": len(store),
        "ledger_rows": len(ledger),
        "wire_acks": sum(len(e.get("rvns", [])) for e in wire),
        "proxy_faults": {k: v for e in harness if e.get("op") == "proxy-faults"
                         for k, v in e.get("counts", {}).items()},
        "faults": sum(1 for e in harness if e.get("op") == "fault"),
        "fault_list": [e.get("what", "?") for e in harness if e.get("op") == "fault"],
        "max_hold_end_past_deadline_s": round(max(lateness), 3) if lateness else None,
        "effects": effects,
        "violations": len(report.violations),
        "violation_kinds": sorted(report.counts()),
    }
    return report


def fault_effects(holds: list[Hold], harness: list[dict[str, Any]], acks: list[float]) -> list[dict[str, Any]]:
    """Per fault: the holds lost after it (before the next fault), when each
    holder was told (from the fault, and from its last confirmation), how long
    before the next holder of that lock got it, and the longest time in which
    no client was told of any lock write (acks: when each was)."""
    faults = sorted((e for e in harness if e.get("op") == "fault"), key=lambda e: float(e["t"]))
    by_lock: dict[str, list[Hold]] = defaultdict(list)
    for hold in holds:
        by_lock[hold.lock].append(hold)
    for lock_holds in by_lock.values():
        lock_holds.sort(key=lambda h: h.start)
    effects = []
    for index, fault in enumerate(faults):
        start = float(fault["t"])
        until = float(faults[index + 1]["t"]) if index + 1 < len(faults) else float("inf")
        told, margins, takeovers = [], [], []
        for hold in holds:
            if not hold.how.startswith("lost") or hold.end is None or not start <= hold.end < until:
                continue
            told.append((hold.end - start, hold.end - hold.confirms[-1]))
            # The next holder may have come before this one was told (an overlap: negative).
            later = [h for h in by_lock[hold.lock] if h.start > hold.start and h.client != hold.client]
            if later:
                margins.append(later[0].start - hold.end)
                takeovers.append(later[0].start - start)
        heal = next((float(e["t"]) for e in sorted(harness, key=lambda e: float(e["t"]))
                     if e.get("op") == "heal" and float(e["t"]) >= start), start)
        # From the fault until the first acknowledgement after the heal.
        window = [start] + [t for t in acks if start < t <= max(heal, start)]
        after = [t for t in acks if t > max(heal, start)]
        window.append(after[0] if after else window[-1])
        silence = max((b - a for a, b in zip(window, window[1:])), default=0.0)
        effects.append({"what": fault.get("what", "?"), "lost": len(told),
                        "longest_without_a_write_s": round(silence, 1),
                        "told_after_fault_s": span([t for t, _ in told]),
                        "told_after_last_renewal_s": span([r for _, r in told]),
                        "next_holder_after_fault_s": span(takeovers),
                        "told_before_next_holder_s": span(margins)})
    return effects


def span(values: list[float]) -> str | None:
    if not values:
        return None
    low, high = min(values), max(values)
    return f"{low:.1f}" if abs(high - low) < 0.05 else f"{low:.1f} to {high:.1f}"


def build_holds(clients: dict[str, list[dict[str, Any]]],
                report: Report) -> tuple[list[Hold], dict[tuple[str, int], dict[str, Any]]]:
    holds: list[Hold] = []
    writes: dict[tuple[str, int], dict[str, Any]] = {}
    for name, history in clients.items():
        lease = margin = None
        open_holds: dict[str, Hold] = {}
        last_time = 0.0

        def close(hold: Hold, at: float, how: str) -> None:
            hold.end, hold.how = at, how
            holds.append(hold)
            open_holds.pop(hold.lock, None)
            if at > hold.deadline_at(at) + SLACK:
                report.add("late", f"{hold.describe()}: it went on {at - hold.deadline_at(at):.3f} s "
                                   f"past its deadline (last confirmation + lease - margin)")

        for event in history:
            op = event["op"]
            last_time = max(last_time, time_of(event), float(event.get("complete", 0)))
            lock = event.get("lock")
            current = open_holds.get(lock) if lock is not None else None
            if op == "start":
                lease, margin = float(event["lease"]), float(event["margin"])
            elif op == "acquire" and event.get("outcome") == "ok":
                if lease is None or margin is None:
                    report.add("late", f"{name}: acquire before its start line (no lease known)")
                    lease, margin = 0.0, 0.0
                if current is not None:
                    close(current, float(event["invoke"]), "acquired again")
                open_holds[lock] = Hold(name, lock, float(event["complete"]), [int(event["rvn"])],
                                        [float(event["complete"])], lease, margin)
            elif op == "renew" and current is not None:
                current.rvns.append(int(event["rvn"]))
                current.confirms.append(float(event["t"]))
            elif op == "heartbeat" and event.get("outcome") == "ok" and current is not None:
                current.rvns.append(int(event["rvn"]))
                current.confirms.append(float(event["complete"]))
            elif op == "write":
                writes[(name, int(event["seq"]))] = event
                at = float(event["invoke"])
                if current is None or at < current.start:
                    report.add("unheld-act", f"{name} wrote under {lock!r} at {at:.3f} "
                                             f"(token {event['token']}) without a confirmed hold")
                    continue
                current.writes += 1
                if int(event["token"]) not in current.rvns:
                    report.add("unheld-act", f"{name} wrote under {lock!r} at {at:.3f} with token "
                                             f"{event['token']}, not one of its hold's RVNs {current.rvns}")
                if at > current.deadline_at(at) + SLACK:
                    report.add("late", f"{name} wrote under {lock!r} at {at:.3f}, "
                                       f"{at - current.deadline_at(at):.3f} s past its deadline")
            elif op == "lost" and current is not None:
                close(current, float(event["t"]), f"lost: {event.get('reason', '')}")
            elif op == "release" and current is not None:
                close(current, float(event["invoke"]), f"released ({event.get('outcome')})")
            elif op == "stop":
                for hold in list(open_holds.values()):
                    close(hold, float(event["t"]), "stopped")
        for hold in list(open_holds.values()):
            close(hold, last_time, "history ended")
    return holds, writes


def check_overlaps(holds: list[Hold], report: Report) -> None:
    by_lock: dict[str, list[Hold]] = defaultdict(list)
    for hold in holds:
        by_lock[hold.lock].append(hold)
    for lock_holds in by_lock.values():
        lock_holds.sort(key=lambda h: h.start)
        for i, first in enumerate(lock_holds):
            for second in lock_holds[i + 1:]:
                if second.start >= (first.end or first.start):
                    continue
                if second.client != first.client:
                    overlap = min(first.end or 0, second.end or 0) - second.start
                    report.add("overlap", f"{first.describe()} and {second.describe()}: "
                                          f"both held it for {overlap:.3f} s")


def check_store(store: list[dict[str, Any]], writes: dict[tuple[str, int], dict[str, Any]],
                report: Report) -> None:
    largest: dict[str, tuple[int, dict[str, Any]]] = {}
    kept = set()
    for row in sorted(store, key=lambda r: int(r["id"])):
        resource, token = row["resource"], int(row["token"])
        if resource in largest and token < largest[resource][0]:
            before = largest[resource][1]
            report.add("store-backwards", f"the store accepted token {token} from {row['writer']} for "
                                          f"{resource!r} after token {before['token']} from {before['writer']}")
        if resource not in largest or token >= largest[resource][0]:
            largest[resource] = (token, row)
        key = (row["writer"], int(row["seq"]))
        kept.add(key)
        write = writes.get(key)
        if write is not None and write.get("outcome") == "fail":
            report.add("store-refused-kept", f"the store keeps write {key} that its client was told was refused")
    for key, write in writes.items():
        if write.get("outcome") == "ok" and key not in kept and store_known(store):
            report.add("store-lost", f"write {key} (token {write['token']} under {write['lock']!r}) was "
                                     f"acknowledged but is not in the store")


def store_known(store: list[dict[str, Any]]) -> bool:
    """A history without store rows (a test case of other things) checks no store."""
    return bool(store)


def check_rvns(clients: dict[str, list[dict[str, Any]]], report: Report) -> dict[str, int]:
    """RVNs issued once each, and in real-time order; returns the largest RVN
    acknowledged per lock."""
    issued: dict[int, tuple[str, str, str, float]] = {}
    largest: dict[str, int] = {}
    ended: list[tuple[float, int, str]] = []  # (complete, rvn, what)
    started: list[tuple[float, int, str]] = []  # (invoke, rvn, what)
    for name, history in clients.items():
        for event in history:
            op = event["op"]
            if op == "renew":
                rvn, at = int(event["rvn"]), float(event["t"])
                invoke = None
            elif op in ("acquire", "heartbeat") and event.get("outcome") == "ok":
                rvn, at, invoke = int(event["rvn"]), float(event["complete"]), float(event["invoke"])
            else:
                continue
            what = f"{name} {op} {event['lock']!r} rvn {rvn} ({invoke if invoke is not None else at:.3f}..{at:.3f})"
            if rvn in issued:
                report.add("rvn-twice", f"RVN {rvn} issued twice: {issued[rvn][3]} and {what}")
            else:
                issued[rvn] = (name, event["lock"], op, what)  # type: ignore[assignment]
            largest[event["lock"]] = max(largest.get(event["lock"], 0), rvn)
            ended.append((at, rvn, what))
            if invoke is not None:
                started.append((invoke, rvn, what))
    ended.sort()
    started.sort()
    best: tuple[int, str] | None = None
    index = 0
    for invoke, rvn, what in started:
        while index < len(ended) and ended[index][0] < invoke:
            if best is None or ended[index][1] > best[0]:
                best = (ended[index][1], ended[index][2])
            index += 1
        if best is not None and rvn < best[0]:
            report.add("rvn-backwards", f"{what} got a smaller RVN than {best[1]}, which completed before it began")
    return largest


def check_ledger(clients: dict[str, list[dict[str, Any]]], ledger: dict[tuple[str, int], dict[str, Any]],
                 report: Report) -> None:
    if not ledger:
        ledgered = any(e.get("seq") is not None and e["op"] in ("acquire", "heartbeat", "release")
                       and e.get("outcome") == "ok" for h in clients.values() for e in h)
        if not ledgered:
            return
    for name, history in clients.items():
        for event in history:
            if event["op"] not in ("acquire", "heartbeat", "release") or event.get("seq") is None:
                continue
            if event.get("outcome") != "ok":
                continue
            row = ledger.get((name, int(event["seq"])))
            if row is None or row["op"] != event["op"] or int(row["rvn"]) != int(event["rvn"]):
                report.add("ledger-lost", f"{name} {event['op']} {event['lock']!r} rvn {event['rvn']} "
                                          f"(seq {event['seq']}, acknowledged at {event['complete']:.3f} by "
                                          f"{event.get('server', '?')}) is not in the ledger after healing")


def check_final(largest: dict[str, int], final: dict[str, dict[str, Any]], report: Report) -> None:
    if not final:
        return
    for lock, rvn in sorted(largest.items()):
        row = final.get(lock)
        if row is None:
            report.add("lock-back", f"lock {lock!r} is gone after healing; RVN {rvn} was acknowledged for it")
        elif int(row["rvn"]) < rvn:
            report.add("lock-back", f"lock {lock!r} is at RVN {row['rvn']} after healing, below the "
                                    f"acknowledged RVN {rvn}")


def check_isolated(clients: dict[str, list[dict[str, Any]]], harness: list[dict[str, Any]],
                   wire: list[dict[str, Any]], report: Report) -> None:
    windows = []
    open_fault: dict[str, Any] | None = None
    for event in sorted(harness, key=lambda e: float(e.get("t", 0))):
        if event.get("op") == "fault" and event.get("minority_primary"):
            open_fault = event
        elif event.get("op") == "heal" and open_fault is not None:
            windows.append((float(open_fault["t"]), float(event["t"]), open_fault["minority_primary"],
                            open_fault.get("what", "")))
            open_fault = None
    if open_fault is not None:
        windows.append((float(open_fault["t"]), float("inf"), open_fault["minority_primary"],
                        open_fault.get("what", "")))
    reported: set[tuple[str, int]] = set()
    # The RVNs each client took as acquired or renewed: an answer it threw away
    # (a call it had given up on) tells it nothing.
    taken = {(name, int(e["rvn"])) for name, history in clients.items() for e in history
             if e["op"] == "renew" or (e["op"] in ("acquire", "heartbeat") and e.get("outcome") == "ok")}
    for name, history in clients.items():
        for event in history:
            if event.get("outcome") != "ok" or "server" not in event or "rvn" not in event:
                continue
            for start, end, node, what in windows:
                if event["server"] == node and float(event["invoke"]) >= start and float(event["complete"]) <= end:
                    reported.add((name, int(event["rvn"])))
                    report.add("isolated-ack", f"{name} {event['op']} {event['lock']!r} rvn {event.get('rvn')} "
                                               f"acknowledged by {node} at {event['complete']:.3f}, while it was "
                                               f"cut off ({what}, from {start:.3f})")
    for ack in sorted(wire, key=lambda e: float(e["t"])):
        for start, end, node, what in windows:
            if ack["server"] != node or not start + ACK_GRACE <= float(ack["t"]) <= end:
                continue
            fresh = [rvn for rvn in ack["rvns"]
                     if (ack["client"], int(rvn)) in taken and (ack["client"], int(rvn)) not in reported]
            if not fresh:
                continue
            reported.update((ack["client"], int(rvn)) for rvn in fresh)
            report.add("isolated-ack", f"{ack['client']} was told by {node} at {float(ack['t']):.3f} "
                                       f"({float(ack['t']) - start:.1f} s after the cut: {what}) that its "
                                       f"{ack.get('call', 'call')} gave RVN(s) {fresh}")


def load(path: str) -> list[dict[str, Any]]:
    events = []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                events.append(json.loads(line))
            except ValueError as error:
                raise SystemExit(f"{path}:{number}: not JSON: {error}") from error
    return events


def summary(report: Report) -> str:
    s = report.stats
    by_op = ", ".join(f"{k} {v}" for k, v in s["by_op"].items())
    lines = [
        f"clients {s['clients']}; {s['operations']} operations ({by_op})",
        f"holds {s['holds']}, lost {s['lost']}; store writes accepted {s['store_writes_accepted']}; "
        f"ledger rows {s['ledger_rows']}; latest loss signal past its deadline: "
        f"{s['max_hold_end_past_deadline_s']} s",
        f"faults injected {s['faults']}: {'; '.join(s['fault_list']) or '-'}",
        f"proxy faults applied: {', '.join(f'{k} {v}' for k, v in sorted(s['proxy_faults'].items())) or '-'}; "
        f"RVNs seen acknowledged on the wire {s['wire_acks']}",
        f"violations {s['violations']}" + (f" {dict(report.counts())}" if report.violations else ""),
    ]
    for effect in s["effects"]:
        quiet = f"no lock write acknowledged for {effect['longest_without_a_write_s']} s at most"
        if not effect["lost"]:
            lines.insert(-1, f"after \"{effect['what']}\": no lock lost; {quiet}")
            continue
        text = (f"after \"{effect['what']}\": {quiet}; {effect['lost']} holder(s) told the lock was lost "
                f"{effect['told_after_fault_s']} s later ({effect['told_after_last_renewal_s']} s after "
                f"their last renewal)")
        if effect["next_holder_after_fault_s"]:
            text += (f"; the next holder got it {effect['next_holder_after_fault_s']} s after the fault, "
                     f"{effect['told_before_next_holder_s']} s after they were told")
        lines.insert(-1, text)
    lines += [f"  VIOLATION {kind}: {text}" for kind, text in report.violations[:50]]
    if len(report.violations) > 50:
        lines.append(f"  ... and {len(report.violations) - 50} more")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    failed = False
    for path in argv:
        report = check(load(path))
        print(f"== {path}")
        print(summary(report))
        failed = failed or bool(report.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
