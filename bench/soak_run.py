"""One soak run, phase by phase: a hive on the fake API, its agents spawned and warmed up, a
burst, the paced load with its faults, the drain, the stop, and what is left to read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fleet, soak_procs
from bench.dashboard import login
from bench.report import note
from bench.soak_account import HarnessTurn, Stored
from bench.soak_faults import Fault, Faults, schedule
from bench.soak_hive import Restart, SoakError, SoakHive
from bench.soak_model import Records, SoakModel
from bench.soak_operator import Answer, Operator, OpSend
from bench.soak_procs import Leftover, Sampler, Series
from bench.soak_watch import Watcher, WatchResult
from hive_share.names import MANAGER_NAME
from tests.fake_anthropic import FakeAnthropic

OP_RATE = 0.25
"""Operator sends per second, hive-wide (Poisson): with the turns they set off, about half a
turn per second, which two cores carry with room to spare."""
AGENT_PORT_BASE = 19000
"""The agents' web ports: below the test workers' ranges (22000–31999) and far from the
default (42000 up), where a `./dev serve` hive's agents listen."""
WARMUP_AT_ONCE = 4
TURN_BOUND = 120.0
"""Bound on one agent's turn during the warm-up and the burst."""
IDLE_BOUND = 60.0
SETTLE_BOUND = 90.0


@dataclass(frozen=True)
class Config:
    agents: int
    minutes: float
    seed: int
    drain_bound: float
    rate: float = OP_RATE

    @property
    def load_seconds(self) -> float:
        return self.minutes * 60


@dataclass
class Collected:
    """Everything a run leaves for the report."""

    cfg: Config
    agents: list[str]
    phases: dict[str, float] = field(default_factory=dict)
    """Phase name → when it began (`time.time()`): start, ready, spawned, warm, load,
    burst_end, load_end, drain_end, stopped."""
    burst_ends: dict[str, float] = field(default_factory=dict)
    records: Records = field(default_factory=Records)
    sends: list[OpSend] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    reads: dict[int, float] = field(default_factory=dict)
    delivered_seen: set[int] = field(default_factory=set)
    watch: WatchResult = field(default_factory=lambda: WatchResult([], []))
    series: Series = field(default_factory=Series)
    faults: list[Fault] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    stored: list[Stored] = field(default_factory=list)
    turns: list[HarnessTurn] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    written: int = 0
    drained: bool = False
    notes: list[str] = field(default_factory=list)


def agent_env(fake: FakeAnthropic, root: Path, claude: str) -> dict[str, str]:
    """What the daemon gets (and hands to its harnesses and their claude)."""
    home = root / "home"
    home.mkdir(exist_ok=True)
    return {
        "HIVE_CLAUDE_BIN": claude,
        "HIVE_AGENT_PORT_BASE": str(AGENT_PORT_BASE),
        "ANTHROPIC_BASE_URL": fake.url,
        "ANTHROPIC_API_KEY": "soak-not-a-key",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "MCP_TIMEOUT": "20000",
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` on `loop`, from the fake API's thread."""
    loop.call_soon_threadsafe(fn, *args)


async def _bounded(what: str, bound: float, work: Awaitable[Any]) -> Any:
    try:
        async with asyncio.timeout(bound):
            return await work
    except TimeoutError:
        raise SoakError(f"{what} took longer than {bound:.0f}s") from None


class Run:
    def __init__(self, cfg: Config, root: Path, claude: str) -> None:
        self.cfg = cfg
        self.root = root
        self.claude = claude
        self.agents = [f"s{i:02d}" for i in range(cfg.agents)]
        self.rng = random.Random(cfg.seed)
        self.model = SoakModel(self.agents, root / "state", random.Random(self.rng.random()))
        self.out = Collected(cfg, self.agents)
        self.progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.hive: SoakHive
        self.op: Operator
        self.watcher: Watcher
        self.token = ""

    def _phase(self, name: str) -> None:
        now = self.out.phases[name] = time.time()
        note(f"soak: {name} at {now - self.out.phases.get('start', now):.1f}s")

    def _poke(self) -> None:
        self.progress.set()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(work))

    async def changed(self, bound: float) -> None:
        """Wait (up to `bound`) until the model, the stream or the inbox shows progress after
        the last call; the caller looks at what it waits for between two calls."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.progress.wait(), bound)
        self.progress.clear()

    async def run(self) -> Collected:
        loop = asyncio.get_running_loop()
        self._phase("start")
        with FakeAnthropic(self.model) as fake:
            self.model.clear_seen = fake.seen.clear
            self.model.on_change = lambda: _soon(loop, self._poke)
            self.hive = SoakHive(self.root, agent_env(fake, self.root, self.claude), self.agents)
            self.op = Operator(self.hive, random.Random(self.rng.random()))
            self.op.on_read = self._poke
            self.model.on_question = lambda a: _soon(loop, self.op.question, a)

            def delivered(ids: list[int]) -> None:
                loop.call_soon_threadsafe(self._delivered, ids)

            self.watcher = Watcher(self.cfg.seed, delivered)
            try:
                await self._phases()
            finally:
                await self._wind_down()
        await self._read_back()
        return self.out

    def _delivered(self, ids: list[int]) -> None:
        self.out.delivered_seen.update(ids)
        self._poke()

    async def _phases(self) -> None:
        await self.hive.start()
        self._phase("ready")
        self.token = await asyncio.to_thread(login, self.hive.daemon)
        self.watcher.up(self.hive.dashboard_port(), self.token, self.hive.epoch)
        sampler = Sampler(self.hive.pid)
        self.out.series = sampler.series
        self._background(sampler.run())
        self._background(self.op.follow())
        await _bounded(
            "spawning", fleet.bound(len(self.agents)), fleet.spawn(self.hive.daemon, self.agents)
        )
        self._phase("spawned")
        await self._warm_up()
        self._phase("warm")
        if not await soak_procs.quiet(self.hive.daemon.pid, SETTLE_BOUND):
            self.out.notes.append(
                f"the harnesses were still busy {SETTLE_BOUND:.0f}s after the warm-up"
            )
        await self._load()
        await self._drain()

    async def _warm_up(self) -> None:
        """One short turn per agent, a few at a time: every claude has run once."""
        gate = asyncio.Semaphore(WARMUP_AT_ONCE)

        async def one(name: str) -> None:
            async with gate:
                before = await self.hive.turns_run(name)
                sent = await self.op.send(name, "warmup")
                if sent.msg_id is None:
                    raise SoakError(f"the warm-up send to {name} failed: {sent.error}")
                await self.hive.turn_done(name, before + 1, TURN_BOUND)

        await _bounded(
            "the warm-up",
            TURN_BOUND * len(self.agents),
            asyncio.gather(*(one(n) for n in self.agents)),
        )

    async def _burst(self) -> None:
        """One message to every agent at once; waits (bounded) for each agent's next turn."""
        before = await asyncio.gather(*(self.hive.turns_run(n) for n in self.agents))

        async def ended(name: str, after: int) -> None:
            await self.hive.turn_done(name, after, TURN_BOUND)
            self.out.burst_ends[name] = time.time()

        self._phase("burst")
        sent = await asyncio.gather(*(self.op.send(n, "burst") for n in self.agents))
        if failed := [s for s in sent if s.msg_id is None]:
            raise SoakError(f"{len(failed)} burst sends failed, the first: {failed[0].error}")
        await _bounded(
            "the burst",
            TURN_BOUND + 30,
            asyncio.gather(*(ended(n, b + 1) for n, b in zip(self.agents, before, strict=True))),
        )
        self._phase("burst_end")

    async def _restart(self) -> Restart:
        self.watcher.down()
        got = await self.hive.restart()
        self.watcher.up(self.hive.dashboard_port(), self.token, self.hive.epoch)
        return got

    async def _load(self) -> None:
        self.model.mode = "load"
        self._phase("load")
        start = self.out.phases["load"]
        until = start + self.cfg.load_seconds
        await self._burst()
        faults = Faults(
            self.hive, self.model, random.Random(self.rng.random()), self._restart, self.changed
        )
        load = asyncio.create_task(self.op.load(self.agents, self.cfg.rate, until))
        injected = asyncio.create_task(faults.run(start, until, schedule(self.cfg.load_seconds)))
        try:
            bound = until - time.time() + 5 * fleet.CALL_TIMEOUT
            await _bounded("the load phase", bound, asyncio.gather(load, injected))
        finally:
            load.cancel()
            injected.cancel()
            await asyncio.gather(load, injected, return_exceptions=True)
            self.out.faults, self.out.restarts = faults.done, faults.restarts
        self._phase("load_end")

    def _outstanding(self) -> tuple[int, list[int]]:
        """(what is still on its way, the ids whose ack the stream has not shown)."""
        rec = self.model.snapshot()
        finished = {s.turn for s in rec.shows if s.turn in rec.finished}
        shown = {i.msg_id for s in rec.shows if s.turn in finished for i in s.items}
        events = {(i.event, i.event_id) for s in rec.shows for i in s.items if i.event}
        to_agents = [s.msg_id for s in self.op.sends.values() if s.msg_id is not None]
        to_agents += [
            s.msg_id for s in rec.sends.values() if s.msg_id is not None and s.to != "operator"
        ]
        to_operator = [
            s.msg_id for s in rec.sends.values() if s.msg_id is not None and s.to == "operator"
        ]
        unacked = [i for i in to_agents if i not in self.out.delivered_seen]
        left = sum(1 for i in to_agents if i not in shown) + len(unacked)
        left += sum(1 for i in to_operator if i not in self.op.reads)
        left += sum(
            1
            for a in self.op.answers.values()
            if a.ok and ("question_answered", a.qid) not in events
        )
        left += sum(1 for r in rec.reminded if ("reminder_due", r) not in events)
        return left, unacked

    async def _drain(self) -> None:
        """No new work; wait (bounded) until every message sent was handled, every answer
        and reminder reached its agent; then until every agent is idle."""
        self.model.mode = "drain"
        deadline = time.monotonic() + self.cfg.drain_bound
        await _bounded(
            "answering the open questions",
            self.cfg.drain_bound,
            self.op.answer_pending(self.model.snapshot().asked),
        )
        while True:
            left, unacked = self._outstanding()
            if unacked:  # acks the stream may have missed (a restart, a resync)
                self.out.delivered_seen |= await asyncio.to_thread(self.hive.delivered, unacked)
                left, unacked = self._outstanding()
            if left == 0:  # and what the records missed: a harness acks after going idle
                left = len(await asyncio.to_thread(self.hive.undelivered))
            remaining = deadline - time.monotonic()
            if left == 0 or remaining <= 0:
                self.out.drained = left == 0
                if left:
                    self.out.notes.append(
                        f"{left} items still on their way when the drain's bound passed"
                    )
                break
            await self.changed(remaining)
        await _bounded(
            "the agents going idle",
            IDLE_BOUND + 15,
            asyncio.gather(*(self.hive.idle(n, IDLE_BOUND) for n in self.agents)),
        )
        self._phase("drain_end")

    async def _wind_down(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.out.watch = await self.watcher.finish()
        await self.hive.stop()
        self._phase("stopped")
        skip = {os.getpid()}
        found = await asyncio.to_thread(soak_procs.leftovers, str(self.root), skip)
        alive = set(await soak_procs.still_alive([f.pid for f in found], 5.0))
        self.out.leftovers = [f for f in found if f.pid in alive]

    async def _read_back(self) -> None:
        out, hive = self.out, self.hive
        out.records = self.model.snapshot()
        out.sends = list(self.op.sends.values())
        out.answers = list(self.op.answers.values())
        out.reads = dict(self.op.reads)
        out.stored = await asyncio.to_thread(hive.stored)
        for name in [MANAGER_NAME, *self.agents]:
            out.turns += await asyncio.to_thread(hive.harness_turns, name)
        out.stats = await asyncio.to_thread(hive.turn_stats)
        out.written = await asyncio.to_thread(hive.written)
