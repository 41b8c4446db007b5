"""The soak's hive: one `hive-core serve` on its own temp dirs, started, restarted on the
same dirs and stopped; its sockets; and, once it has stopped, what its databases and its
harnesses' files say."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import select
import socket
import sqlite3
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.daemon import Daemon, Layout, launched, wait_ready
from bench.soak_account import HarnessTurn, Stored
from bench.soak_model import NONCE
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from hive_share.models import WireModel
from hive_share.names import MANAGER_NAME

R = TypeVar("R", bound=WireModel)

CALL_TIMEOUT = 30.0
BACK_TIMEOUT = 60.0
"""Bound on every agent running again after a restart (READY comes after the restore)."""
RUNNING = re.compile(r"STATUS=(\d+) agents? running")


class SoakError(RuntimeError):
    """The run could not go on (the daemon did not start, an agent did not come up, …)."""


@dataclass(frozen=True)
class Restart:
    at: float
    """When the SIGTERM was sent."""
    stop_s: float
    """SIGTERM → the old daemon exited."""
    ready_s: float
    """Spawn of the new daemon → READY=1 (it restores every agent first)."""
    all_back_s: float
    """Spawn of the new daemon → every agent's harness running and answering again."""


class SoakHive(Layout):
    def __init__(self, root: Path, env: Mapping[str, str], agents: list[str]) -> None:
        self.root = root
        self.env = dict(env)
        self.agents = agents
        self.up = asyncio.Event()
        """Set while a daemon runs and answers; cleared just before it is stopped."""
        self.epoch = 0
        """1 for the first daemon, 2 after the restart."""
        self._daemon: Daemon | None = None
        self._notify: socket.socket | None = None
        self._stack = ExitStack()

    @property
    def daemon(self) -> Daemon:
        if self._daemon is None:
            raise SoakError("hive-core is not running")
        return self._daemon

    def pid(self) -> int | None:
        """The running daemon's pid, None while there is none."""
        d = self._daemon
        return d.pid if d is not None and d.proc.poll() is None else None

    def dashboard_port(self) -> int:
        return int((self.run_dir / "dashboard.port").read_text())

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> float:
        """Start hive-core and wait (bounded) for READY=1; seconds from spawn to READY."""
        log = self.root / "daemon.log"
        if log.exists():  # the previous daemon's: each start writes the log afresh
            log.replace(self.root / f"daemon-{self.epoch}.log")
        self._stack = ExitStack()
        daemon, notify = self._stack.enter_context(launched(self.root, self.env))
        self._daemon, self._notify = daemon, notify
        try:
            await asyncio.to_thread(wait_ready, daemon, notify)
        except Exception as exc:
            await asyncio.to_thread(self._stack.close)
            self._daemon = None
            raise SoakError(f"hive-core did not start: {exc}") from exc
        took = time.perf_counter() - daemon.started
        self.epoch += 1
        self.up.set()
        return took

    async def stop(self) -> float:
        """SIGTERM and wait for the exit (bounded, SIGKILL past it); seconds it took."""
        self.up.clear()
        started = time.monotonic()
        if self._daemon is not None:
            await asyncio.to_thread(self._daemon.stop)
            await asyncio.to_thread(self._stack.close)
        self._daemon, self._notify = None, None
        return time.monotonic() - started

    async def restart(self) -> Restart:
        at = time.time()
        stop_s = await self.stop()
        ready_s = await self.start()
        all_back_s = await self._all_back(ready_s)
        return Restart(at, stop_s, ready_s, all_back_s)

    async def _all_back(self, ready_s: float) -> float:
        """Seconds from the new daemon's spawn until every agent (the manager too) runs
        and its harness answers: at READY=1 already, or at the STATUS= line that counts
        them all (bounded by `BACK_TIMEOUT`)."""
        want = len(self.agents) + 1
        if await self._running_alive() >= want:
            return ready_s
        daemon, notify = self.daemon, self._notify
        assert notify is not None
        deadline = time.monotonic() + BACK_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            got = await asyncio.to_thread(_status_line, notify, left)
            if got is None:
                break
            count = RUNNING.search(got)
            if count and int(count.group(1)) >= want and await self._running_alive() >= want:
                return time.perf_counter() - daemon.started
        raise SoakError(f"not every agent ran again within {BACK_TIMEOUT:.0f}s of the restart")

    async def _running_alive(self) -> int:
        got = await self.call(rq.List(cmd="list"), rs.Agents)
        return sum(1 for a in got.agents if a.state == "running" and a.alive)

    # -- requests --------------------------------------------------------------------

    async def call(self, req: WireModel, expect: type[R], path: Path | None = None) -> R:
        """One request on a fresh connection to `path` (host.sock by default), bounded."""
        async with asyncio.timeout(CALL_TIMEOUT), HiveClient(path or self.host_socket) as c:
            return await c.call(req, expect)

    async def turns_run(self, name: str) -> int:
        state = await self.call(
            rq.TurnStatus(cmd="turn_status", wait_seconds=0), rs.HarnessState,
            self.harness_socket(name),
        )  # fmt: skip
        return state.turns_run

    async def turn_done(self, name: str, after: int, bound: float) -> rs.HarnessState:
        """Long-poll `name`'s harness until it has run `after` turns (bounded)."""
        req = rq.TurnStatus(cmd="turn_status", after_turns=after, wait_seconds=bound)
        async with asyncio.timeout(bound + 10), HiveClient(self.harness_socket(name)) as c:
            return await c.call(req, rs.HarnessState)

    async def idle(self, name: str, bound: float) -> str:
        req = rq.TurnStatus(cmd="turn_status", until_state="idle", wait_seconds=bound)
        async with asyncio.timeout(bound + 10), HiveClient(self.harness_socket(name)) as c:
            return (await c.call(req, rs.HarnessState)).turn_state

    # -- afterwards ------------------------------------------------------------------

    def agent_state(self, name: str) -> Path:
        return self.state_dir / "agents" / name / "state"

    def stored(self) -> list[Stored]:
        """Every message in hive.sqlite that carries a soak nonce (read-only)."""
        rows = _rows(
            self.state_dir / "hive.sqlite",
            "SELECT id, sender, recipient, body, sent_at, delivered_at FROM messages "
            "WHERE event IS NULL",
        )
        out: list[Stored] = []
        for r in rows:
            found = NONCE.search(str(r["body"]))
            if found:
                out.append(Stored(r["id"], r["sender"], r["recipient"], found.group(0),
                                  r["sent_at"], r["delivered_at"]))  # fmt: skip
        return out

    def undelivered(self) -> list[int]:
        """The soak's messages to agents hive.sqlite holds undelivered (read-only, while it
        runs too): whatever the model's records missed, such as a send whose result its
        turn never read back."""
        rows = _rows(
            self.state_dir / "hive.sqlite",
            "SELECT id, body FROM messages WHERE delivered_at IS NULL AND event IS NULL "
            "AND recipient != 'operator'",
        )
        return [r["id"] for r in rows if NONCE.search(str(r["body"]))]

    def delivered(self, ids: list[int]) -> set[int]:
        """Which of `ids` hive.sqlite has marked delivered (read-only, while it runs too)."""
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = _rows(
            self.state_dir / "hive.sqlite",
            f"SELECT id FROM messages WHERE delivered_at IS NOT NULL AND id IN ({marks})",
            tuple(ids),
        )
        return {r["id"] for r in rows}

    def harness_turns(self, name: str) -> list[HarnessTurn]:
        """`name`'s turns from its event history: start, end, result, the message ids."""
        rows = _rows(
            self.agent_state(name) / "hyperhive-events.sqlite",
            "SELECT ts, turn_id, kind, data FROM events WHERE kind IN "
            "('turn_started', 'messages_received', 'turn_ended') ORDER BY id",
        )
        turns: dict[str, dict[str, Any]] = {}
        for r in rows:
            data = json.loads(r["data"])
            tid = r["turn_id"] or data.get("turn_id")
            t = turns.setdefault(
                tid, {"started": r["ts"], "ended": None, "result": None, "ids": ()}
            )
            if r["kind"] == "messages_received":
                t["ids"] = tuple(m["id"] for m in data.get("messages", []))
            elif r["kind"] == "turn_ended":
                t["ended"], t["result"] = r["ts"], data.get("result")
        return [
            HarnessTurn(name, tid, t["started"], t["ended"], t["result"], t["ids"])
            for tid, t in turns.items()
        ]

    def turn_stats(self) -> list[dict[str, Any]]:
        """Every agent's turn-stats rows (the manager's too)."""
        out: list[dict[str, Any]] = []
        for name in [MANAGER_NAME, *self.agents]:
            path = self.agent_state(name) / "hyperhive-turn-stats.sqlite"
            for row in _rows(path, "SELECT turn_id, result_kind, started_at, ended_at FROM turns"):
                out.append({"agent": name, **row})
        return out

    def written(self) -> int:
        """Files the model's `Write` calls left in the agents' state dirs."""
        return sum(1 for name in self.agents for p in self.agent_state(name).glob("soak-*.txt"))


def _status_line(notify: socket.socket, timeout: float) -> str | None:
    """The next datagram on the daemon's NOTIFY_SOCKET, None when `timeout` passes first."""
    readable, _, _ = select.select([notify], [], [], timeout)
    if not readable:
        return None
    return notify.recv(4096).decode(errors="replace")


def _rows(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args)]
