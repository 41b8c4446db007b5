"""Stuck signals in hive-core: a harness's reports (raised once per turn, gone with the turn),
ping-pong between two agents, and silent agents, over a real database and a fake clock; the
thresholds from the settings and the deployed agent.toml; the items on the attention list,
the badges on the rows, and the overseer told once."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from hive_core import agent_info, lifecycle
from hive_core.attention import Attention
from hive_core.broker import Broker
from hive_core.bus import EventBus, Subscription
from hive_core.containers.backend import ContainerStatus
from hive_core.db import Database
from hive_core.registry import Registry
from hive_core.services import Services
from hive_core.stuck import StuckWatch
from hive_share import requests as rq
from hive_share.base import StuckSignal
from hive_share.events import Sent
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock, drain, services
from tests.hive_core.test_crash_watch import FakeBackend


@dataclass
class Hive:
    s: Services
    watch: StuckWatch
    attention: Attention
    sub: Subscription

    async def kinds(self) -> list[tuple[str, str | None]]:
        return [(i.kind, i.agent) for i in await self.attention.compute() if i.kind != "approval"]

    async def told(self) -> list[str]:
        """The `stuck` helper events the manager was sent, as `signal:agent`."""

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT body FROM messages WHERE recipient = ? ORDER BY id", (MANAGER_NAME,)
            ).fetchall()
            return [r[0] for r in rows]

        return [b for b in await self.s.db.read(read) if "looks stuck" in b]

    async def send(self, sender: str, to: str, n: int = 1) -> None:
        """`n` messages, each seen by the watch as the bus carries it."""
        for _ in range(n):
            await self.s.broker.send(sender, to, "hi", None)
        for frame in await drain(self.sub):
            if isinstance(frame.event, Sent):
                await self.watch.on_sent(frame.event)


@asynccontextmanager
async def hive(db: Database, clock: FakeClock, root: Path) -> AsyncIterator[Hive]:
    bus = EventBus()
    registry = Registry(db, clock)
    await registry.load()
    await registry.add(MANAGER_NAME, "manager")
    for name in ("alice", "bob", "carol"):
        await registry.add(name, "agent")
    broker = Broker(db, bus, clock, registry.is_recipient)
    backend = FakeBackend()
    s = services(db, bus, clock, registry, broker, backend, root / "s", root / "r")
    for pid, name in enumerate(("alice", "bob", "carol"), start=100):
        backend.statuses[name] = ContainerStatus(running=True, pid=pid)
        s.liveness.report_alive(name, pid)
    sub = bus.subscribe()
    try:
        yield Hive(s, s.stuck, Attention(s, dict, lambda name: False), sub)
    finally:
        sub.close()
        broker.close()


def _stuck(signal: StuckSignal, turn: str = "t1", active: bool = True) -> rq.ReportStuck:
    return rq.ReportStuck(
        cmd="stuck", signal=signal, turn_id=turn, detail=f"{signal} seen", active=active
    )


async def test_a_reported_signal_is_raised_once_and_ends_with_its_turn(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.watch.turn_state("alice", "thinking")
        h.s.liveness.turn_state["alice"] = "thinking"
        await h.watch.report("alice", _stuck("repetition"))
        await h.watch.report("alice", _stuck("repetition"))  # sent twice: one warning
        assert await h.kinds() == [("stuck_repetition", "alice")]
        assert await h.told() == ["alice looks stuck (repetition): repetition seen"]
        record = h.s.registry.find("alice")
        assert record is not None
        assert agent_info.info(h.s, record).stuck == ["stuck_repetition"]
        clock.advance(3600)  # time alone removes nothing
        assert await h.kinds() == [("stuck_repetition", "alice")]
        h.watch.turn_state("alice", "idle")  # the turn ended (a cancel, say)
        assert await h.kinds() == []
        assert agent_info.info(h.s, record).stuck == []
        # The next turn may raise it again.
        h.watch.turn_state("alice", "thinking")
        await h.watch.report("alice", _stuck("repetition", turn="t2"))
        assert await h.kinds() == [("stuck_repetition", "alice")]
        assert len(await h.told()) == 2


async def test_no_progress_leaves_when_the_harness_sees_progress_again(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.watch.turn_state("bob", "tool")
        await h.watch.report("bob", _stuck("no_progress"))
        await h.watch.report("bob", _stuck("burn"))
        assert sorted(await h.kinds()) == [("stuck_burn", "bob"), ("stuck_no_progress", "bob")]
        await h.watch.report("bob", _stuck("no_progress", active=False))
        assert await h.kinds() == [("stuck_burn", "bob")]


async def test_a_report_after_the_turn_ended_or_from_a_stopped_agent_raises_nothing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.watch.report("alice", _stuck("burn"))  # idle: no turn to be stuck in
        assert await h.kinds() == []
        h.watch.turn_state("carol", "thinking")
        await h.watch.report("carol", _stuck("burn"))
        del h.s.liveness.turn_state["carol"]  # its harness exited
        assert await h.kinds() == []


async def test_two_agents_bouncing_messages_raise_ping_pong_once(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        limit = h.s.settings.ping_pong_messages
        for _ in range(limit // 2):
            await h.send("alice", "bob")
            await h.send("bob", "alice")
        assert await h.kinds() == []  # at the limit, not over it
        await h.send("alice", "bob")
        assert await h.kinds() == [("ping_pong", "alice")]
        await h.send("bob", "alice", 5)
        assert await h.told() == [
            f"alice looks stuck (ping pong): {limit + 1} messages between alice and bob in 10 min"
        ]
        record = h.s.registry.find("bob")
        assert record is not None
        assert agent_info.info(h.s, record).stuck == ["ping_pong"]  # the peer's badge too
        # The pair goes quiet: once the window has moved past their messages, it is over.
        clock.advance(h.s.settings.ping_pong_window_minutes * 60 + 1)
        await h.watch.tick()
        assert await h.kinds() == []


async def test_no_ping_pong_with_the_operator_involved_or_other_work_done(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        limit = h.s.settings.ping_pong_messages
        await h.send(OPERATOR, "alice")
        await h.send("alice", "bob", limit + 5)
        await h.send("bob", "alice", 5)
        assert await h.kinds() == []  # the operator spoke to alice in the window
        h.watch.turn_used("carol", {"mcp__hyperhive__send": 3, "Write": 1}, clock.now())
        await h.send("carol", "bob", limit + 5)
        await h.send("bob", "carol", 5)
        assert await h.kinds() == []  # carol wrote a file: work, not a loop
        h.watch.turn_used("alice", {"mcp__hyperhive__send": 3}, clock.now())
        clock.advance(h.s.settings.ping_pong_window_minutes * 60 + 1)
        await h.send("alice", "bob", limit)
        await h.send("bob", "alice", 1)
        assert await h.kinds() == [("ping_pong", "alice")]  # only talk, over the limit


async def test_an_agent_that_leaves_its_messages_queued_is_silent_until_a_turn_starts(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.send(OPERATOR, "carol")
        clock.advance(h.s.settings.silent_minutes * 60 - 1)
        await h.watch.tick()
        assert [k for k in await h.kinds() if k[0] == "silent"] == []
        clock.advance(2)
        await h.watch.tick()
        await h.watch.tick()  # warned once
        assert [k for k in await h.kinds() if k[0] == "silent"] == [("silent", "carol")]
        assert await h.told() == [
            "carol looks stuck (silent): messages queued for 15 min and no turn started"
        ]
        items = [i for i in await h.attention.compute() if i.kind == "silent"]
        assert items[0].since == T0
        assert items[0].action == (
            "hive-core cancel carol; or hive-core new-session carol; or hive-core stop carol"
        )
        h.watch.turn_state("carol", "thinking")
        assert [k for k in await h.kinds() if k[0] == "silent"] == []


async def test_a_silent_agent_needing_a_login_is_left_to_the_login_item(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.s.liveness.login["carol"] = "needs_login"
        await h.send("alice", "carol")
        clock.advance(h.s.settings.silent_minutes * 60 + 1)
        await h.watch.tick()
        assert [k for k in await h.kinds() if k[0] == "silent"] == []


async def test_thresholds_come_from_settings_and_the_deployed_agent_toml(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        assert h.watch.limits("alice").model_dump(exclude={"ok", "result"}) == {
            "no_progress_seconds": 600.0, "repeat": 5, "burn_tokens": 2_000_000,
        }  # fmt: skip
        applied = h.s.settings.agents_dir / "alice" / "applied"
        applied.mkdir(parents=True)
        (applied / "agent.toml").write_text("[stuck]\nno_progress_minutes = 30\nrepeat = 8\n")
        limits = h.watch.limits("alice")
        assert (limits.no_progress_seconds, limits.repeat) == (1800.0, 8)
        assert limits.burn_tokens == 2_000_000  # not overridden: the setting
        (applied / "agent.toml").write_text("[stuck]\nrepeat = 1\n")  # invalid since deployed
        assert h.watch.limits("alice").repeat == 5  # the defaults, with a warning logged


async def test_an_agent_held_by_its_budget_is_not_silent(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.s.usage.budgets.ensure_loaded()
        h.s.usage.budgets._held.add("carol")  # what reaching its limit does
        await h.send("alice", "carol")
        clock.advance(h.s.settings.silent_minutes * 60 + 1)
        await h.watch.tick()
        assert [k for k in await h.kinds() if k[0] == "silent"] == []
        h.s.usage.budgets._held.discard("carol")
        await h.watch.tick()
        assert [k for k in await h.kinds() if k[0] == "silent"] == [("silent", "carol")]


async def test_a_destroyed_agent_leaves_nothing_behind_for_one_of_its_name(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.s.backend.services = h.s  # type: ignore[attr-defined]  # exits go through lifecycle
        limit = h.s.settings.ping_pong_messages
        await h.send("alice", "bob", limit)
        await h.send("bob", "alice", 1)
        h.watch.turn_state("bob", "thinking")
        await h.watch.report("bob", _stuck("burn"))
        assert sorted(await h.kinds()) == [("ping_pong", "alice"), ("stuck_burn", "bob")]
        await lifecycle.destroy(h.s, "bob", purge=False, actor=OPERATOR)
        await h.s.registry.add("bob", "agent")  # a new bob, running
        h.s.backend.statuses["bob"] = ContainerStatus(running=True, pid=200)  # type: ignore[attr-defined]
        h.s.liveness.report_alive("bob", 200)
        assert await h.kinds() == []
        await h.send("alice", "bob", 1)
        assert await h.kinds() == []  # its predecessor's count is gone
        h.watch.turn_state("bob", "thinking")
        await h.watch.report("bob", _stuck("burn"))  # the same turn id: news for this bob
        assert await h.kinds() == [("stuck_burn", "bob")]
