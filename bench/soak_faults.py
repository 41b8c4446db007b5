"""The soak's faults: when each comes (`schedule`) and what it does (`Faults`).

- `kill_harness`: SIGKILL one agent's harness (the daemon's child under the local
  backend); hive-core's crash watch restarts it after its backoff (5 s at first).
- `kill_claude`: SIGKILL the claude process of an agent that is in the middle of a turn
  (its claude waits for a reply of the fake API); the harness retries the turn (10 s).
- `stop_start`: stop an agent, then start it again 3–8 s later, once through the host
  socket and once through the CLI.
- `restart`: SIGTERM hive-core, wait for its exit, start it again on the same dirs.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from bench import soak_procs
from bench.soak_hive import Restart, SoakHive
from bench.soak_model import SoakModel
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError

Kind = Literal["kill_harness", "kill_claude", "stop_start", "restart"]
KILLS_PER_SECOND = 1 / 200
"""Harness kills (and as many claude kills) per second of load, at least two of each."""
STOPS_PER_SECOND = 1 / 400
STOPPED_FOR = (3.0, 8.0)
MID_TURN_MARGIN = 0.8
"""A claude is killed only while its reply is due at least this far ahead."""
FIND_TIMEOUT = 30.0
"""Bound on finding an agent in the middle of a turn."""
CLI_TIMEOUT = 60.0


@dataclass
class Fault:
    at: float
    kind: Kind
    agent: str = ""
    detail: str = ""
    ok: bool = True


def schedule(load_seconds: float) -> list[tuple[float, Kind]]:
    """(seconds into the load phase, fault), in order: harness and claude kills spread over
    the phase, stop/starts between them, one restart of hive-core in the middle."""
    kills = max(2, round(load_seconds * KILLS_PER_SECOND))
    stops = max(1, round(load_seconds * STOPS_PER_SECOND))
    plan: list[tuple[float, Kind]] = [(0.5 * load_seconds, "restart")]
    plan += [((i + 0.3) / kills * load_seconds, "kill_harness") for i in range(kills)]
    plan += [((i + 0.6) / kills * load_seconds, "kill_claude") for i in range(kills)]
    plan += [((i + 0.45) / stops * load_seconds, "stop_start") for i in range(stops)]
    return sorted(plan)


class Faults:
    def __init__(
        self,
        hive: SoakHive,
        model: SoakModel,
        rng: random.Random,
        restart: Callable[[], Awaitable[Restart]],
        changed: Callable[[float], Awaitable[None]],
    ) -> None:
        self.hive = hive
        self.model = model
        self.rng = rng
        self._restart = restart
        self._changed = changed
        """Waits (bounded) until the model records something."""
        self.done: list[Fault] = []
        self.restarts: list[Restart] = []
        self.stopped: set[str] = set()
        """Agents stopped by a fault right now: the other faults leave them alone."""
        self._via_cli = False

    async def run(self, start: float, until: float, plan: Sequence[tuple[float, Kind]]) -> None:
        """Each fault of `plan` at its time (seconds after `start`), one after the other;
        none starts after `until`."""
        for offset, kind in plan:
            wait = start + offset - time.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the schedule's pace
            if time.time() >= until:
                return
            await self.hive.up.wait()
            fault = Fault(time.time(), kind)
            try:
                await getattr(self, kind)(fault)
            except (ClientError, OSError, TimeoutError) as exc:
                fault.ok, fault.detail = False, f"{fault.detail} {type(exc).__name__}: {exc}"
            self.done.append(fault)

    def _victim(self, among: Sequence[str] | None = None) -> str | None:
        mine = self.hive.agents if among is None else [a for a in among if a in self.hive.agents]
        pool = [a for a in mine if a not in self.stopped]
        return self.rng.choice(pool) if pool else None

    async def kill_harness(self, fault: Fault) -> None:
        agent = self._victim()
        daemon = self.hive.pid()
        pid = soak_procs.harnesses(daemon).get(agent or "") if daemon and agent else None
        if agent is None or pid is None:
            fault.ok, fault.detail = False, "no running harness"
            return
        os.kill(pid, signal.SIGKILL)
        fault.agent, fault.detail = agent, f"harness pid {pid}"

    async def kill_claude(self, fault: Fault) -> None:
        deadline = time.monotonic() + FIND_TIMEOUT
        while time.monotonic() < deadline:
            daemon = self.hive.pid()
            agent = self._victim(self.model.mid_turn(MID_TURN_MARGIN)) if daemon else None
            harness = soak_procs.harnesses(daemon).get(agent or "") if daemon else None
            found = soak_procs.claudes(harness) if harness else []
            if agent is not None and found:
                os.kill(found[0], signal.SIGKILL)
                fault.at, fault.agent, fault.detail = time.time(), agent, f"claude pid {found[0]}"
                return
            await self._changed(max(0.0, deadline - time.monotonic()))
        fault.ok, fault.detail = False, f"no agent mid-turn within {FIND_TIMEOUT:.0f}s"

    async def stop_start(self, fault: Fault) -> None:
        agent = self._victim()
        if agent is None:
            fault.ok, fault.detail = False, "no running agent"
            return
        fault.agent = agent
        self.stopped.add(agent)
        self._via_cli = not self._via_cli
        try:
            started = time.monotonic()
            await self._lifecycle("stop", agent, cli=self._via_cli)
            stop_s = time.monotonic() - started
            await asyncio.sleep(self.rng.uniform(*STOPPED_FOR))  # the operator's pause
            started = time.monotonic()
            await self.hive.up.wait()
            await self._lifecycle("start", agent, cli=not self._via_cli)
            start_s = time.monotonic() - started
        finally:
            self.stopped.discard(agent)
        how = "the CLI, start on the socket" if self._via_cli else "the socket, start on the CLI"
        fault.detail = f"stop on {how}; stop took {stop_s:.2f}s, start {start_s:.2f}s"

    async def _lifecycle(self, verb: Literal["stop", "start"], agent: str, cli: bool) -> None:
        if not cli:
            req = rq.Stop(cmd="stop", name=agent)
            await self.hive.call(
                req if verb == "stop" else rq.Start(cmd="start", name=agent), rs.Done
            )
            return
        code, out = await run_cli(self.hive, verb, agent)
        if code != 0:
            raise OSError(f"hive-core {verb} {agent} exited with {code}: {out[-300:]}")

    async def restart(self, fault: Fault) -> None:
        got = await self._restart()
        self.restarts.append(got)
        fault.detail = (
            f"stopped in {got.stop_s:.2f}s, ready in {got.ready_s:.2f}s, "
            f"every agent back {got.all_back_s:.2f}s after the new start"
        )


async def run_cli(hive: SoakHive, *args: str) -> tuple[int, str]:
    """`hive-core ARGS` against the soak's daemon (bounded); exit code and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
    env["HIVE_RUN_DIR"] = str(hive.run_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hive_core", *args,
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(errors="replace")
