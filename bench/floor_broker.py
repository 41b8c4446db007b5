"""The floor broker: what a perfect broker of the same messages costs here.

`python -m bench.floor_broker ROOT NAME...` serves `ROOT/run/host.sock` (the operator) and
`ROOT/run/agents/<NAME>/agent.sock` (one per agent) with the hive's wire for `send`, `recv`
and `ack`, and does the necessary work of a message and nothing else, on the standard library
only: JSON lines on unix sockets; one durable row per send in a WAL database
(`ROOT/state/hive.sqlite`, `synchronous=FULL`) with the idempotency key checked by a unique
index; group commit (every write that arrives while a commit runs joins the next one, in one
writer thread); a reply only after the commit; a parked long-poll `recv` woken by the send,
answered from memory; `ack` (alone, or carried by the next `recv`) as one UPDATE, committed
before the answer. No validation models, no events, no throttle: what the hive does beyond
this is its own cost. It sends `READY=1` to `$NOTIFY_SOCKET` once it listens, and stops on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINE = 1 << 20
SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT,
    sent_at REAL NOT NULL,
    delivered_at REAL);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages(sender, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_undelivered
    ON messages(recipient, id) WHERE delivered_at IS NULL;"""
"""The one table: a durable row per send, its idempotency key unique per sender, and each
recipient's undelivered messages in id order."""
Write = Callable[[sqlite3.Connection], Any]


class Writer(threading.Thread):
    """The one write connection: runs every queued write in one transaction per commit."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(daemon=True)
        self._loop = loop
        self._queue: queue.SimpleQueue[tuple[Write, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.executescript(SCHEMA)

    def submit(self, write: Write) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((write, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1000:
                    item = self._queue.get_nowait()
                    if item is None:
                        self._queue.put(None)
                        break
                    batch.append(item)
            self.conn.execute("BEGIN IMMEDIATE")
            results: list[tuple[asyncio.Future[Any], Any, Exception | None]] = []
            for write, future in batch:
                self.conn.execute("SAVEPOINT one")
                try:
                    results.append((future, write(self.conn), None))
                    self.conn.execute("RELEASE one")
                except sqlite3.Error as exc:
                    self.conn.execute("ROLLBACK TO one")
                    self.conn.execute("RELEASE one")
                    results.append((future, None, exc))
            self.conn.execute("COMMIT")
            self._loop.call_soon_threadsafe(_settle, results)


def _settle(results: list[tuple[asyncio.Future[Any], Any, Exception | None]]) -> None:
    for future, value, exc in results:
        if not future.done():
            if exc is None:
                future.set_result(value)
            else:
                future.set_exception(exc)


@dataclass
class Inbox:
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    leases: dict[int, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Floor:
    def __init__(self, root: Path, names: list[str], loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.names = names
        (root / "state").mkdir(parents=True, exist_ok=True)
        self.writer = Writer(root / "state" / "hive.sqlite", loop)
        self.inboxes = {n: Inbox() for n in [*names, "operator"]}
        self.conn_ids = itertools.count(1)
        self.closing = asyncio.Event()

    # -- requests -----------------------------------------------------------

    async def send(self, me: str, req: dict[str, Any]) -> dict[str, Any]:
        to, body, key = req["to"], req["body"], req.get("idempotency_key")
        inbox = self.inboxes.get(to)
        if inbox is None or to == me:
            return {"ok": False, "code": "unknown_agent", "error": f"no agent {to!r}"}
        now = time.time()

        def insert(conn: sqlite3.Connection) -> tuple[int, bool]:
            try:
                cur = conn.execute(
                    "INSERT INTO messages (sender, recipient, body, idempotency_key, sent_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (me, to, body, key, now),
                )
            except sqlite3.IntegrityError:
                row = conn.execute(
                    "SELECT id FROM messages WHERE sender = ? AND idempotency_key = ?", (me, key)
                ).fetchone()
                return row[0], True
            return int(cur.lastrowid or 0), False

        msg_id, duplicate = await self.writer.submit(insert)
        if not duplicate:
            inbox.pending[msg_id] = {
                "id": msg_id, "sender": me, "recipient": to, "body": body, "sent_at": now,
            }  # fmt: skip
            inbox.wake.set()
        return {"ok": True, "result": "sent", "id": msg_id, "duplicate": duplicate}

    async def ack(self, me: str, ids: list[int]) -> int:
        if not ids:
            return 0
        inbox = self.inboxes[me]
        now = time.time()
        marks = ",".join("?" * len(ids))

        def update(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                f"UPDATE messages SET delivered_at = ? WHERE id IN ({marks}) "
                "AND recipient = ? AND delivered_at IS NULL",
                (now, *ids, me),
            )
            return cur.rowcount

        count: int = await self.writer.submit(update)
        for i in ids:
            inbox.pending.pop(i, None)
            inbox.leases.pop(i, None)
        return count

    async def recv(self, me: str, conn_id: int, req: dict[str, Any]) -> dict[str, Any]:
        acked = await self.ack(me, req.get("ack") or [])
        inbox = self.inboxes[me]
        limit = int(req.get("max", 100))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(req.get("wait_seconds", 0))
        while True:
            inbox.wake.clear()
            free = [m for i, m in inbox.pending.items() if i not in inbox.leases][:limit]
            if free or self.closing.is_set():
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inbox.wake.wait(), remaining)
        for m in free:
            inbox.leases[m["id"]] = conn_id
        return {"ok": True, "result": "messages", "messages": free, "acked": acked}

    def release(self, conn_id: int) -> None:
        for inbox in self.inboxes.values():
            mine = [i for i, owner in inbox.leases.items() if owner == conn_id]
            for i in mine:
                del inbox.leases[i]
            if mine:
                inbox.wake.set()

    # -- connections --------------------------------------------------------

    def serving(self, me: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn_id = next(self.conn_ids)
            try:
                while line := await reader.readline():
                    req = json.loads(line)
                    match req.get("cmd"):
                        case "send":
                            answer = await self.send(me, req)
                        case "recv":
                            answer = await self.recv(me, conn_id, req)
                        case "ack":
                            count = await self.ack(me, req.get("ids") or [])
                            answer = {"ok": True, "result": "acked", "count": count}
                        case other:
                            answer = {"ok": False, "code": "unknown_verb", "error": str(other)}
                    writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.release(conn_id)
                writer.close()

        return serve

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.writer.start()
        run = self.root / "run"
        servers = [
            await asyncio.start_unix_server(
                self.serving("operator"), str(run / "host.sock"), limit=MAX_LINE
            )
        ]
        for name in self.names:
            path = run / "agents" / name / "agent.sock"
            path.parent.mkdir(parents=True, exist_ok=True)
            servers.append(
                await asyncio.start_unix_server(self.serving(name), str(path), limit=MAX_LINE)
            )
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        _notify("READY=1")
        await stop.wait()
        self.closing.set()
        for inbox in self.inboxes.values():
            inbox.wake.set()
        for server in servers:
            server.close()
        self.writer.stop()
        await asyncio.to_thread(self.writer.join, 10)


def _notify(state: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), path)


async def _main(root: Path, names: list[str]) -> None:
    (root / "run").mkdir(parents=True, exist_ok=True)
    await Floor(root, names, asyncio.get_running_loop()).run()


if __name__ == "__main__":
    asyncio.run(_main(Path(sys.argv[1]), sys.argv[2:]))
