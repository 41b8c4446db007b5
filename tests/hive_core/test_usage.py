"""What turns cost, over a real database and a clock that moves only on demand: a turn is
recorded once, the report's sums are the rows' sums over each rolling window, the windows
roll with the clock, the last 24 hours come hour by hour, and old rows are pruned."""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hive_core import render
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import UnknownAgent
from hive_core.registry import Registry
from hive_core.services import Services
from hive_core.usage import HIVE_TOTAL, KEEP_SECONDS
from hive_share import requests as rq
from hive_share.models import AgentUsage, Approval
from hive_share.names import MANAGER_NAME
from tests.hive_core.conftest import T0, FakeClock, services
from tests.hive_core.test_crash_watch import FakeBackend

HOUR = 3600.0
WINDOW_5H = 5 * HOUR
WINDOW_7D = 7 * 24 * HOUR
_turns = itertools.count(1)


@dataclass
class Hive:
    s: Services
    clock: FakeClock

    async def turn(
        self, agent: str, ago: float = 0.0, *, turn_id: str | None = None, **figures: Any
    ) -> rq.ReportTurnUsage:
        """Report one turn of `agent` that ended `ago` seconds before now."""
        end = self.clock.now() - ago
        req = rq.ReportTurnUsage(
            cmd="turn_usage", turn_id=turn_id or f"turn-{next(_turns)}", started_at=end - 30,
            ended_at=end, model="opus", result_kind="success", **figures,
        )  # fmt: skip
        await self.s.usage.record(agent, req)
        return req

    async def rows(self) -> list[sqlite3.Row]:
        return await self.s.db.read(
            lambda c: c.execute("SELECT * FROM turn_usage ORDER BY id").fetchall()
        )

    async def usage(
        self, agent: str | None = None, window: str | None = None
    ) -> dict[tuple[str, str], AgentUsage]:
        report = await self.s.usage.report(agent, window, False)  # type: ignore[arg-type]
        assert report.now == self.clock.now()
        return {(u.agent, u.window): u for u in report.usage}


@asynccontextmanager
async def hive(
    db: Database, clock: FakeClock, root: Path, agents: tuple[str, ...] = ("alice", "bob")
) -> AsyncIterator[Hive]:
    """A manager and `agents` in a real registry; services over the real stores."""
    bus = EventBus()
    registry = Registry(db, clock)
    await registry.load()
    await registry.add(MANAGER_NAME, "manager")
    for name in agents:
        await registry.add(name, "agent")
    broker = Broker(db, bus, clock, registry.is_recipient)
    fake = FakeBackend()
    s = services(db, bus, clock, registry, broker, fake, root / "s", root / "r")
    fake.services = s
    try:
        yield Hive(s, clock)
    finally:
        broker.close()


def expected(
    rows: list[sqlite3.Row], agent: str | None, since: float, until: float
) -> dict[str, Any]:
    """The sums a report must give, computed from the rows themselves."""
    mine = [r for r in rows if agent in (None, r["agent"]) and since <= r["ended_at"] <= until]
    sums = {
        key: sum(r[key] for r in mine)
        for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                    "cache_read_input_tokens")
    }  # fmt: skip
    sums["turns"] = len(mine)
    sums["tokens"] = (
        sums["input_tokens"] + sums["cache_creation_input_tokens"] + sums["output_tokens"]
    )
    sums["cost_usd"] = pytest.approx(sum(r["cost_usd"] for r in mine))
    return sums


def figures(u: AgentUsage) -> dict[str, Any]:
    return {
        key: getattr(u, key)
        for key in ("turns", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                    "cache_read_input_tokens", "tokens", "cost_usd")
    }  # fmt: skip


async def test_a_turn_is_recorded_once(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    async with hive(db, clock, tmp_path) as h:
        req = await h.turn("alice", input_tokens=100, output_tokens=20, tools={"Bash": 2})
        assert await h.s.usage.record("alice", req) is False  # the harness's resend
        changed = req.model_copy(update={"input_tokens": 999})
        assert await h.s.usage.record("alice", changed) is False  # same id: the first stands
        assert await h.s.usage.record("bob", req) is True  # ids are per agent
        rows = await h.rows()
        assert [(r["agent"], r["turn_id"], r["input_tokens"]) for r in rows] == [
            ("alice", req.turn_id, 100), ("bob", req.turn_id, 100),
        ]  # fmt: skip
        assert rows[0]["tools"] == '{"Bash": 2}'
        got = await h.usage("alice", "5h")
        assert (got["alice", "5h"].turns, got["alice", "5h"].tokens) == (1, 120)


async def test_the_report_sums_the_rows_of_each_window(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    pick = random.Random(7)
    async with hive(db, clock, tmp_path, agents=("alice", "bob", "carol")) as h:
        for _ in range(60):
            await h.turn(
                pick.choice(["alice", "bob", "carol"]),
                ago=pick.uniform(0, 9 * 24 * HOUR),
                input_tokens=pick.randrange(0, 50_000),
                output_tokens=pick.randrange(0, 5_000),
                cache_creation_input_tokens=pick.randrange(0, 20_000),
                cache_read_input_tokens=pick.randrange(0, 200_000),
                cost_usd=round(pick.uniform(0, 2), 4),
            )
        rows = await h.rows()
        now = clock.now()
        got = await h.usage()
        assert len(got) == (3 + 1 + 1) * 2  # hm1nd, alice, bob, carol and the hive's total
        for agent in (MANAGER_NAME, "alice", "bob", "carol", None):
            for window, length in (("5h", WINDOW_5H), ("7d", WINDOW_7D)):
                row = got[agent or HIVE_TOTAL, window]
                assert figures(row) == expected(rows, agent, now - length, now), (agent, window)
                assert (row.limit_tokens, row.limit_usd, row.state) == (None, None, "ok")
        assert got["alice", "7d"].turns > got["alice", "5h"].turns  # the windows differ
        assert len(rows) > got[HIVE_TOTAL, "7d"].turns  # and rows past 7 days are left out
        only = await h.usage("bob", "7d")
        assert list(only) == [("bob", "7d")]
        assert figures(only["bob", "7d"]) == expected(rows, "bob", now - WINDOW_7D, now)


async def test_the_windows_roll_with_the_clock(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=1000)
        clock.advance(WINDOW_5H)  # the window is [now - 5h, now]: still in
        assert (await h.usage("alice"))["alice", "5h"].tokens == 1000
        clock.advance(1)
        got = await h.usage("alice")
        assert (got["alice", "5h"].tokens, got["alice", "7d"].tokens) == (0, 1000)
        clock.advance(WINDOW_7D - WINDOW_5H)
        got = await h.usage("alice")
        assert (got["alice", "5h"].turns, got["alice", "7d"].turns) == (0, 0)


async def test_a_turn_ending_in_the_future_counts_as_now(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.turn("alice", ago=-10 * 24 * HOUR, output_tokens=5)
        (row,) = await h.rows()
        assert row["ended_at"] == T0 and row["started_at"] <= row["ended_at"]
        clock.advance(WINDOW_5H + 1)  # it leaves the window like any turn of now
        assert (await h.usage("alice"))["alice", "5h"].tokens == 0


async def test_the_last_24_hours_hour_by_hour(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        hour = (T0 // HOUR) * HOUR
        clock.t = hour + 1800  # half past
        await h.turn("alice", ago=0, input_tokens=10, cost_usd=0.5)
        await h.turn("alice", ago=1700, output_tokens=5)  # the same hour
        await h.turn("bob", ago=1800 + 60, input_tokens=7)  # the hour before
        await h.turn("alice", ago=25 * HOUR, input_tokens=1000)  # too old
        report = await h.s.usage.report(None, None, True)
        got = [(u.agent, u.hour, u.tokens, u.cost_usd) for u in report.hourly]
        assert got == [("bob", hour - HOUR, 7, 0.0), ("alice", hour, 15, 0.5)]
        mine = await h.s.usage.report("bob", None, True)
        assert [u.agent for u in mine.hourly] == ["bob"]
        assert (await h.s.usage.report(None, None, False)).hourly == []


async def test_old_rows_are_pruned(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.turn("alice", ago=KEEP_SECONDS + 60, input_tokens=1)
        kept = await h.turn("alice", ago=KEEP_SECONDS - 60, input_tokens=2)
        await h.s.usage.tick()  # the first tick prunes
        assert [r["turn_id"] for r in await h.rows()] == [kept.turn_id]
        clock.advance(120)
        await h.s.usage.tick()  # then only once an hour
        assert len(await h.rows()) == 1
        clock.advance(HOUR)
        await h.s.usage.tick()
        assert await h.rows() == []


async def test_agents_gone_or_unknown(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=3)
        await h.s.registry.remove("alice")
        got = await h.usage()
        assert got["alice", "5h"].tokens == 3  # its turns still count, listed after the rest
        assert list(got)[-4:] == [("alice", "5h"), ("alice", "7d"),
                                  (HIVE_TOTAL, "5h"), (HIVE_TOTAL, "7d")]  # fmt: skip
        assert (await h.usage("alice"))["alice", "7d"].tokens == 3
        with pytest.raises(UnknownAgent):
            await h.s.usage.report("zed", None, False)


def test_the_table_shows_limits_and_shares() -> None:
    rows = [
        AgentUsage(agent="alice", window="5h", turns=3, input_tokens=1_500_000, output_tokens=0,
                   cache_creation_input_tokens=100_000, cache_read_input_tokens=9_000_000,
                   tokens=1_600_000, cost_usd=3.5, limit_tokens=2_000_000, state="warning"),
        AgentUsage(agent="\x1b[31m*", window="7d", turns=0, input_tokens=0, output_tokens=0,
                   cache_creation_input_tokens=0, cache_read_input_tokens=0, tokens=0,
                   cost_usd=0.0, limit_usd=10.0),
    ]  # fmt: skip
    lines = render.usage(rows).splitlines()
    assert lines[0].split() == ["AGENT", "WINDOW", "TURNS", "TOKENS", "LIMIT", "USED", "COST",
                                "LIMIT", "$", "STATE", "CACHE", "READ"]  # fmt: skip
    assert lines[1].split() == ["alice", "5h", "3", "1,600,000", "2,000,000", "80%", "$3.50",
                                "-", "warning", "9,000,000"]  # fmt: skip
    assert lines[2].split()[:2] == ["\\x1b[31m*", "7d"]
    assert lines[2].split()[4:8] == ["-", "0%", "$0.00", "$10.00"]
    assert render.usage([]) == "no usage"


def test_a_budget_approval_says_what_was_reached_in_pending() -> None:
    why = "alice reached 1,000 tokens in 5h (limit 1,000 tokens); approve to allow another …"
    approval = Approval(id=3, kind="budget", agent="alice", requester="hive", status="pending",
                        created_at=T0, reason=why)  # fmt: skip
    (_, row) = render.approvals([approval], now=T0 + 5).splitlines()
    assert row.split()[:5] == ["3", "budget", "alice", "hive", "5s"]
    assert row.endswith(why)  # in CHANGE, cut at 100 characters
