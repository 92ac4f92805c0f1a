#!/usr/bin/env python3
"""A TCP proxy between database clients and PostgreSQL servers that injects the
faults of a bad network: delay, loss, stalls, cut connections, and faults aimed
at the reply to one kind of call (the server ran and committed it; the client
never hears of it, hears half of it, or hears it late).

    faultproxy.py --control SOCKET --route NAME:LISTEN_PORT:HOST:PORT [--route ...]
                  [--log FILE] [--seed N] [--connect-timeout SECONDS]

Each route listens on 127.0.0.1:LISTEN_PORT (of the network namespace it runs in)
and forwards every connection to HOST:PORT; a connection whose server cannot be
reached within --connect-timeout (1 s) is reset, as a connect to a host cut off
by a partition fails (without that, a cut-off server would look like one that
accepts and then never answers, which some drivers wait for forever). Faults are set per route, by name
(shell-style patterns), over the control socket: one JSON object per line, one
JSON reply per line.

    {"cmd": "set", "routes": "rust-*", "faults": {...}}   replace the faults
    {"cmd": "clear", "routes": "*"}                        no faults
    {"cmd": "cut", "routes": "go-1*"}                      reset every connection now
    {"cmd": "stats"}                                       faults applied so far

Faults (all optional):

    delay_ms: [LO, HI]       every message waits LO..HI ms (both directions)
    loss: P                  a message is "lost" with probability P: as TCP would,
                             it (and what follows it) arrives after a retransmission
                             timeout, 200 ms doubling while losses repeat (at most 3.2 s)
    stall: true              nothing passes in either direction until cleared
    refuse: true             new connections are reset at once
    reply: {"match": KINDS, "action": "drop" | "cut_mid" | "delay",
            "prob": P, "delay_ms": [LO, HI], "count": N}
                             the reply to a call of one of KINDS ("heartbeat_many",
                             "heartbeat", "acquire", "acquire_wait", "release",
                             "slot", "other", "any"; a list or "a|b"): "drop"
                             swallows it whole, then resets the connection (the
                             call ran and committed: its ReadyForQuery came);
                             "cut_mid" passes half of it and resets; "delay"
                             holds it (and what follows) back. At most N times.
    request: {"match": KINDS, "action": "delay", "delay_ms": [LO, HI], "prob": P,
              "count": N}
                             the call itself reaches the server late

The proxy reads the PostgreSQL protocol to know which call a reply answers:
Parse gives a statement's text, Bind or Query names the call, each Sync or Query
gets one ReadyForQuery. Cancel requests pass through like any connection.
Every fault applied is logged (--log) as a JSON line with its CLOCK_MONOTONIC
time, and so is every RVN a reply forwarded to the client acknowledges (the
first bigint column of a row whose first boolean column, if any, is not false, in text or
binary), with the server it came from: the checker learns from them which node
acknowledged each RVN of each client. Only the standard library; Python 3.9 or later.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import time
from typing import Any

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
KINDS = ("heartbeat_many", "heartbeat", "acquire_wait", "acquire", "release", "slot", "other")


def classify(query: str) -> str:
    """The kind of pglock call a statement makes: the first pglock function it
    names (a statement may call a second one, as the Go client's acquire calls
    pglock_heartbeat to store data)."""
    found = []
    for kind, pattern in (
        ("heartbeat_many", r"pglock_heartbeat_many\s*\("),
        ("heartbeat", r"pglock_heartbeat\s*\("),
        ("acquire_wait", r"pglock_acquire_wait(_committing)?\s*\("),
        ("slot", r"pglock_acquire_slot\s*\("),
        ("acquire", r"pglock_acquire\s*\("),
        ("release", r"pglock_release(_all)?\s*\("),
    ):
        match = re.search(pattern, query)
        if match:
            found.append((match.start(), kind))
    return min(found)[1] if found else "other"


ACKED_CALLS = ("heartbeat_many", "heartbeat", "acquire_wait", "acquire", "slot")
INT8, BOOL = 20, 16


def result_formats(bind_rest: bytes) -> list[int]:
    """The result format codes at the end of a Bind message (after the names)."""
    try:
        offset = 0
        (n,) = struct.unpack_from("!h", bind_rest, offset)
        offset += 2 + 2 * n
        (n,) = struct.unpack_from("!h", bind_rest, offset)
        offset += 2
        for _ in range(n):
            (length,) = struct.unpack_from("!i", bind_rest, offset)
            offset += 4 + max(length, 0)
        (n,) = struct.unpack_from("!h", bind_rest, offset)
        offset += 2
        return list(struct.unpack_from(f"!{n}h", bind_rest, offset))
    except struct.error:
        return []


def row_description(body: bytes) -> tuple[list[tuple[str, int]], list[int]]:
    (n,) = struct.unpack_from("!h", body, 0)
    offset, fields, formats = 2, [], []
    for _ in range(n):
        end = body.index(b"\0", offset)
        name = body[offset:end].decode("utf-8", "replace")
        _table, _column, oid, _len, _mod, fmt = struct.unpack_from("!ihihih", body, end + 1)
        offset = end + 1 + 18
        fields.append((name, oid))
        formats.append(fmt)
    return fields, formats


def acked_rvn(body: bytes, fields: list[tuple[str, int]], formats: list[int]) -> int | None:
    """The RVN a row acknowledges, unless the row says it was not acquired or not
    renewed (a refusal shows the holder's RVN)."""
    try:
        (n,) = struct.unpack_from("!h", body, 0)
        offset, values = 2, []
        for _ in range(n):
            (length,) = struct.unpack_from("!i", body, offset)
            offset += 4
            values.append(None if length < 0 else body[offset:offset + length])
            offset += max(length, 0)
    except struct.error:
        return None

    def fmt(index: int) -> int:
        if not formats:
            return 0
        return formats[0] if len(formats) == 1 else formats[index]

    # The first bigint column is the RVN (acquire, heartbeat, heartbeat_many and
    # the clients' own statements around them all put it first); the first
    # boolean, if any, says whether it was acquired or renewed.
    rvn, said = None, None
    for index, (_name, oid) in enumerate(fields[:len(values)]):
        value = values[index]
        if oid == BOOL and said is None:
            said = value is not None and value not in (b"f", b"\x00")
        elif oid == INT8 and rvn is None and value is not None:
            rvn = struct.unpack("!q", value)[0] if fmt(index) == 1 else int(value)
    return None if said is False else rvn


def matches(spec: Any, kind: str) -> bool:
    if spec in (None, "any", "*"):
        return True
    kinds = spec if isinstance(spec, list) else str(spec).split("|")
    return kind in kinds


def now() -> float:
    return time.monotonic()


class Log:
    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a", buffering=1) if path else None  # noqa: SIM115
        self.counts: dict[str, int] = {}

    def fault(self, route: str, kind: str, **fields: Any) -> None:
        key = f"{route}:{kind}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.file:
            self.file.write(json.dumps({"t": round(now(), 6), "route": route, "fault": kind, **fields}) + "\n")

    def ack(self, route: Route, call: str, rvns: list[int]) -> None:
        if self.file:
            self.file.write(json.dumps({"t": round(now(), 6), "route": route.name, "upstream": route.host,
                                        "ack": call, "rvns": rvns}) + "\n")


class Route:
    def __init__(self, name: str, listen: int, host: str, port: int) -> None:
        self.name, self.listen, self.host, self.port = name, listen, host, port
        self.faults: dict[str, Any] = {}
        self.used: dict[str, int] = {}  # "reply"/"request": times applied
        self.connections: set[Conn] = set()
        self.unstalled = asyncio.Event()
        self.unstalled.set()

    def set(self, faults: dict[str, Any]) -> None:
        self.faults = dict(faults)
        self.used = {}
        if faults.get("stall"):
            self.unstalled.clear()
        else:
            self.unstalled.set()

    def take(self, which: str, kind: str, rng: random.Random) -> dict[str, Any] | None:
        """The reply or request fault to apply to a call of `kind`, if one applies now."""
        spec = self.faults.get(which)
        if not spec or not matches(spec.get("match"), kind):
            return None
        if "count" in spec and self.used.get(which, 0) >= spec["count"]:
            return None
        if rng.random() >= spec.get("prob", 1.0):
            return None
        self.used[which] = self.used.get(which, 0) + 1
        return spec


def pick_ms(value: Any, rng: random.Random) -> float:
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value) / 1000
    lo, hi = value
    return rng.uniform(lo, hi) / 1000


class Direction:
    """One direction of a connection: messages queued with the time each may go."""

    def __init__(self, conn: Conn, writer: asyncio.StreamWriter, label: str) -> None:
        self.conn, self.writer, self.label = conn, writer, label
        self.queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self.last_due = 0.0
        self.losses = 0  # consecutive losses, for the retransmission backoff

    def put(self, data: bytes, extra: float = 0.0) -> None:
        route, rng = self.conn.route, self.conn.proxy.rng
        faults = route.faults
        due = now() + extra + pick_ms(faults.get("delay_ms"), rng)
        loss = faults.get("loss", 0.0)
        if loss and rng.random() < loss:
            rto = min(0.2 * (2**self.losses), 3.2)
            self.losses += 1
            due += rto
            self.conn.proxy.log.fault(route.name, "loss", direction=self.label, rto=rto)
        else:
            self.losses = 0
        # In order: nothing overtakes what came before it.
        due = max(due, self.last_due)
        self.last_due = due
        self.queue.put_nowait((due, data))

    async def pump(self) -> None:
        route = self.conn.route
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                due, data = item
                wait = due - now()
                if wait > 0:
                    await asyncio.sleep(wait)
                await route.unstalled.wait()
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.conn.reset()


class Conn:
    def __init__(self, proxy: Proxy, route: Route) -> None:
        self.proxy, self.route = proxy, route
        self.client_writer: asyncio.StreamWriter | None = None
        self.server_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.closed = False
        # Protocol state.
        self.statements: dict[bytes, str] = {}
        self.fields: dict[bytes, list[tuple[str, int]]] = {}  # a statement's result columns
        self.batch: list[str] = []  # kinds of the calls since the last Sync
        self.batch_ops: list[tuple[Any, ...]] = []  # ("describe", name) and ("bind", name, formats)
        self.pending: list[str] = ["startup"]  # one per ReadyForQuery to come
        self.pending_ops: list[list[tuple[Any, ...]]] = [[]]
        self.startup_done = False
        self.server_single_byte = 0  # replies of one byte to SSL/GSS requests
        # Decoding the reply being read, for the RVNs it acknowledges.
        self.acks: list[int] = []
        self.reply_fields: list[tuple[str, int]] | None = None
        self.reply_formats: list[int] = []
        self.binds_seen = 0
        self.described = 0

    def watch_reply(self, message: bytes, ops: list[tuple[Any, ...]], collect: bool) -> None:
        """Follows a reply to a lock call: which columns its rows have (from the
        statement's description, or the reply's own), in which formats (from the
        Bind), and the RVNs of the rows that say acquired or renewed."""
        kind, body = message[:1], message[5:]
        if kind == b"T":
            fields, formats = row_description(body)
            describes = [op[1] for op in ops if op[0] == "describe"]
            if self.described < len(describes):
                self.fields[describes[self.described]] = fields
                self.described += 1
            else:
                self.reply_fields, self.reply_formats = fields, formats
        elif kind == b"2":  # BindComplete: the next Bind's statement runs
            binds = [op for op in ops if op[0] == "bind"]
            if self.binds_seen < len(binds):
                _, name, formats = binds[self.binds_seen]
                self.reply_fields = self.fields.get(name) if name else self.reply_fields
                self.reply_formats = formats
            self.binds_seen += 1
        elif kind == b"n" and any(op[0] == "describe" for op in ops):
            if self.described < sum(1 for op in ops if op[0] == "describe"):
                self.described += 1  # NoData: a statement without rows
        elif kind == b"D" and self.reply_fields and collect:
            rvn = acked_rvn(body, self.reply_fields, self.reply_formats)
            if rvn is not None:
                self.acks.append(rvn)
        elif kind == b"Z":
            self.reply_fields, self.reply_formats, self.binds_seen = None, [], 0
            self.described = 0

    def reset(self) -> None:
        """Ends the connection with a reset on both sides."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client_writer, self.server_writer):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            writer.transport.abort()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.route.connections.discard(self)

    # -- client to server -------------------------------------------------------

    def client_messages(self, buffer: bytearray) -> list[tuple[bytes, str | None]]:
        """Complete messages in `buffer` (taken out), each with the call kind it
        completes (a Sync or Query: one ReadyForQuery to come), if any."""
        out: list[tuple[bytes, str | None]] = []
        while True:
            if not self.startup_done:
                if len(buffer) < 8:
                    return out
                length, code = struct.unpack("!ii", buffer[:8])
                if len(buffer) < length:
                    return out
                message = bytes(buffer[:length])
                del buffer[:length]
                if code in (SSL_REQUEST, GSS_REQUEST):
                    self.server_single_byte += 1
                elif code == CANCEL_REQUEST:
                    self.pending, self.pending_ops = [], []
                    self.startup_done = True
                else:
                    self.startup_done = True
                out.append((message, None))
                continue
            if len(buffer) < 5:
                return out
            kind_byte = buffer[0:1]
            (length,) = struct.unpack("!i", buffer[1:5])
            if len(buffer) < length + 1:
                return out
            message = bytes(buffer[: length + 1])
            del buffer[: length + 1]
            body = message[5:]
            call = None
            if kind_byte == b"P":
                name, rest = body.split(b"\0", 1)
                query = rest.split(b"\0", 1)[0].decode("utf-8", "replace")
                self.statements[name] = query
                if name == b"":
                    self.batch.append(classify(query))
            elif kind_byte == b"B":
                _portal, rest = body.split(b"\0", 1)
                name, rest = rest.split(b"\0", 1)
                if name != b"":
                    self.batch.append(classify(self.statements.get(name, "")))
                self.batch_ops.append(("bind", name, result_formats(rest)))
            elif kind_byte == b"D" and body[:1] == b"S":
                self.batch_ops.append(("describe", body[1:].split(b"\0", 1)[0]))
            elif kind_byte == b"Q":
                call = classify(body.split(b"\0", 1)[0].decode("utf-8", "replace"))
                self.batch_ops = [("query",)]
            elif kind_byte == b"S":
                kinds = [k for k in self.batch if k != "other"] or ["other"]
                call = kinds[0]
                self.batch = []
            if call is not None:
                self.pending.append(call)
                self.pending_ops.append(self.batch_ops)
                self.batch_ops = []
            out.append((message, call))

    async def client_to_server(self, reader: asyncio.StreamReader, up: Direction) -> None:
        buffer = bytearray()
        rng = self.proxy.rng
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                held = 0.0
                for message, call in self.client_messages(buffer):
                    if call is not None:
                        spec = self.route.take("request", call, rng)
                        if spec and spec.get("action", "delay") == "delay":
                            held = pick_ms(spec.get("delay_ms"), rng)
                            self.proxy.log.fault(self.route.name, "request_delay", call=call, delay=held)
                    up.put(message, held)
        except (ConnectionError, OSError):
            pass
        finally:
            self.reset()

    # -- server to client ---------------------------------------------------------

    async def server_to_client(self, reader: asyncio.StreamReader, down: Direction) -> None:
        buffer = bytearray()
        rng = self.proxy.rng
        # The fault of the reply being read: (spec, call, bytes passed so far)
        current: dict[str, Any] | None = None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                while True:
                    if self.server_single_byte and buffer:
                        self.server_single_byte -= 1
                        down.put(bytes(buffer[:1]))
                        del buffer[:1]
                        continue
                    if len(buffer) < 5:
                        break
                    (length,) = struct.unpack("!i", buffer[1:5])
                    if len(buffer) < length + 1:
                        break
                    message = bytes(buffer[: length + 1])
                    del buffer[: length + 1]
                    call = self.pending[0] if self.pending else "other"
                    if current is None and call != "startup":
                        spec = self.route.take("reply", call, rng)
                        if spec:
                            action = spec.get("action", "drop")
                            current = {"spec": spec, "action": action, "call": call, "parts": [],
                                       "delay": pick_ms(spec.get("delay_ms"), rng)}
                            if action == "delay":
                                self.proxy.log.fault(self.route.name, "reply_delay", call=call,
                                                     delay=current["delay"])
                    ready = message[:1] == b"Z"
                    if self.pending_ops:
                        self.watch_reply(message, self.pending_ops[0], call in ACKED_CALLS)
                    if ready and self.pending:
                        self.pending.pop(0)
                        if self.pending_ops:
                            self.pending_ops.pop(0)
                        if self.acks:
                            acks, self.acks = self.acks, []
                            if current is None or current["action"] == "delay":
                                # Forwarded: the client is told of these RVNs.
                                self.proxy.log.ack(self.route, call, acks)
                    if current is None:
                        down.put(message)
                        continue
                    action = current["action"]
                    if action == "delay":
                        down.put(message, current["delay"])
                        if ready:
                            current = None
                        continue
                    current["parts"].append(message)
                    if not ready:
                        continue
                    # The whole reply is here: the call ran to its end, commit
                    # included (ReadyForQuery comes after it).
                    reply = b"".join(current["parts"])
                    if action == "cut_mid":
                        down.put(reply[: max(1, len(reply) // 2)])
                        self.proxy.log.fault(self.route.name, "reply_cut_mid", call=current["call"])
                    else:
                        self.proxy.log.fault(self.route.name, "reply_dropped", call=current["call"])
                    # Let what was queued before go, then reset.
                    deadline = now() + 5
                    while not down.queue.empty() and now() < deadline:
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.05)
                    self.reset()
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self.reset()


class Proxy:
    def __init__(self, routes: list[Route], log: Log, seed: int, connect_timeout: float = 1.0) -> None:
        self.connect_timeout = connect_timeout
        self.routes = {route.name: route for route in routes}
        self.log = log
        self.rng = random.Random(seed)

    def select(self, pattern: str) -> list[Route]:
        return [route for name, route in self.routes.items() if fnmatch.fnmatchcase(name, pattern)]

    async def serve(self, route: Route) -> asyncio.base_events.Server:
        async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            conn = Conn(self, route)
            conn.client_writer = client_writer
            if route.faults.get("refuse"):
                self.log.fault(route.name, "refused")
                conn.reset()
                return
            route.connections.add(conn)
            # The client's TCP connect succeeded at once (we are local to it); a
            # server that cannot be reached must not look like one that
            # accepts and then says nothing: reset the client once the
            # upstream connect has not completed within --connect-timeout, as
            # a connect to an unreachable host with that connect_timeout ends.
            try:
                server_reader, server_writer = await asyncio.wait_for(
                    asyncio.open_connection(route.host, route.port), timeout=self.connect_timeout)
            except (OSError, asyncio.TimeoutError):
                self.log.fault(route.name, "upstream_unreachable")
                conn.reset()
                return
            if conn.closed:
                server_writer.transport.abort()
                return
            conn.server_writer = server_writer
            up = Direction(conn, server_writer, "up")
            down = Direction(conn, client_writer, "down")
            conn.tasks = [
                asyncio.ensure_future(conn.client_to_server(client_reader, up)),
                asyncio.ensure_future(conn.server_to_client(server_reader, down)),
                asyncio.ensure_future(up.pump()),
                asyncio.ensure_future(down.pump()),
            ]
            await asyncio.gather(*conn.tasks, return_exceptions=True)

        return await asyncio.start_server(handle, "127.0.0.1", route.listen, reuse_address=True)

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        routes = self.select(request.get("routes", "*"))
        if cmd == "set":
            for route in routes:
                route.set(request.get("faults", {}))
            return {"ok": True, "routes": [r.name for r in routes]}
        if cmd == "clear":
            for route in routes:
                route.set({})
            return {"ok": True, "routes": [r.name for r in routes]}
        if cmd == "cut":
            count = 0
            for route in routes:
                for conn in list(route.connections):
                    conn.reset()
                    count += 1
                self.log.fault(route.name, "cut_all")
            return {"ok": True, "cut": count}
        if cmd == "stats":
            return {"ok": True, "counts": self.log.counts,
                    "connections": {r.name: len(r.connections) for r in self.routes.values()}}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--control", required=True)
    parser.add_argument("--route", action="append", default=[], required=True)
    parser.add_argument("--log")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connect-timeout", type=float, default=1.0)
    args = parser.parse_args()
    routes = []
    for text in args.route:
        name, listen, host, port = text.rsplit(":", 3)
        routes.append(Route(name, int(listen), host, int(port)))
    proxy = Proxy(routes, Log(args.log), args.seed, args.connect_timeout)
    servers = [await proxy.serve(route) for route in routes]

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = proxy.command(json.loads(line))
                except (ValueError, KeyError, TypeError) as error:
                    reply = {"ok": False, "error": str(error)}
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    if os.path.exists(args.control):
        os.unlink(args.control)
    control_server = await asyncio.start_unix_server(control, args.control)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    control_server.close()
    for server in servers:
        server.close()
    for route in routes:
        for conn in list(route.connections):
            conn.reset()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
