"""Budgets over a real database, broker and approval queue, with a clock that moves only on
demand: the overseer is warned once per crossing; at a limit the agent is held (its `recv`
leases nothing, its messages stay queued) behind one `budget` approval; approving raises the
limit and releases it at once, denying keeps it held, and the window rolling lifts the hold
and withdraws the approval; a restart keeps all of it without telling anyone twice."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hive_core import approval_flow
from hive_core.db import Database
from hive_core.errors import Conflict
from hive_core.usage import Usage
from hive_share import helper
from hive_share.models import Approval, AttentionItem
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock
from tests.hive_core.test_usage import HOUR, WINDOW_5H, WINDOW_7D, Hive, hive

_owners = itertools.count(100)
LIMIT = 1000


@asynccontextmanager
async def limited(db: Database, clock: FakeClock, root: Path, **limits: Any) -> AsyncIterator[Hive]:
    """A hive whose agents may spend LIMIT tokens in 5 hours (unless `limits` say else)."""
    async with hive(db, clock, root) as h:
        update = {"budget_tokens_5h": LIMIT, **limits}
        h.s.settings = h.s.settings.model_copy(update=update)
        yield h


async def told(h: Hive) -> list[helper.BudgetReached]:
    """The budget news new in the overseer's (the manager's) inbox."""
    found = []
    for m in await h.s.broker.recv(MANAGER_NAME, next(_owners), 0, 100):
        assert m.sender == "hive" and isinstance(m.event, helper.BudgetReached), m
        found.append(m.event)
    return found


async def budget_approvals(h: Hive) -> list[Approval]:
    rows = await h.s.db.read(
        lambda c: c.execute("SELECT id FROM approvals WHERE kind = 'budget' ORDER BY id").fetchall()
    )
    return [await h.s.approvals.get(r[0]) for r in rows]


async def delivered(h: Hive, agent: str = "alice", wait: float = 0) -> list[str]:
    """What a `recv` of `agent` leases now (acked at once, as a harness would)."""
    owner = next(_owners)
    got = await h.s.broker.recv(agent, owner, wait, 100)
    await h.s.broker.ack(agent, owner, [m.id for m in got])
    return [m.body for m in got]


async def queue(h: Hive, *bodies: str) -> None:
    for body in bodies:
        await h.s.broker.send(OPERATOR, "alice", body, None)


def budget_items(items: list[AttentionItem]) -> list[tuple[str, str, str, float, int | None]]:
    return [(i.key, i.kind, i.severity, i.since, i.ref) for i in items]


async def test_the_overseer_is_warned_once_per_crossing(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=500)
        assert await told(h) == [] and await h.s.usage.items() == []
        clock.advance(60)
        await h.turn("alice", output_tokens=300)  # 800 of 1000: the warn percentage, 80
        assert await told(h) == [
            helper.BudgetReached(agent="alice", window="5h", used=800, limit=LIMIT,
                                 unit="tokens", hard=False),
        ]  # fmt: skip
        (item,) = await h.s.usage.items()
        assert budget_items([item]) == [
            ("budget_warning:alice:5h", "budget_warning", "warn", T0 + 60, None)
        ]
        assert item.action == "hive-core usage alice"
        assert item.summary == "alice spent 800 tokens of 1,000 tokens in 5h (80 %)"
        clock.advance(60)
        await h.turn("alice", cache_creation_input_tokens=50, cache_read_input_tokens=10**6)
        await h.s.usage.tick()
        assert await told(h) == []  # the same crossing: told once
        assert [i.since for i in await h.s.usage.items()] == [T0 + 60]
        assert not await h.s.usage.budgets.held("alice")  # cache reads do not count

        clock.advance(WINDOW_5H + 1)  # the window rolls past all three turns
        await h.s.usage.tick()
        assert await h.s.usage.items() == []
        await h.turn("alice", input_tokens=900)  # a new crossing
        assert [e.used for e in await told(h)] == [900]


async def test_at_the_limit_the_agent_is_held_and_its_messages_stay(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await queue(h, "first")
        await h.turn("alice", input_tokens=LIMIT - 1)
        assert not await h.s.usage.budgets.held("alice")
        await h.turn("alice", output_tokens=201)  # 1,200: past the limit
        assert await h.s.usage.budgets.held("alice")
        await queue(h, "second")
        assert await delivered(h) == []
        assert await h.s.broker.undelivered_count("alice") == 2  # queued, never delivered
        assert await delivered(h, "bob") == []  # others are not held (and have nothing)
        (approval,) = await budget_approvals(h)
        assert (approval.agent, approval.requester, approval.status) == ("alice", "hive", "pending")
        assert approval.reason == (
            "alice reached 1,200 tokens in 5h (limit 1,000 tokens); approve to allow another "
            "250 tokens in 5h until the window rolls"
        )
        news = await told(h)
        assert [(e.window, e.used, e.limit, e.hard) for e in news] == [("5h", 1200, LIMIT, True)]
        (item,) = await h.s.usage.items()
        assert budget_items([item]) == [
            ("over_budget:alice:5h", "over_budget", "urgent", T0, approval.id)
        ]
        assert item.action == f"hive-core show {approval.id}; hive-core approve {approval.id}"
        report = await h.s.usage.report("alice", "5h", False)
        assert [(u.tokens, u.limit_tokens, u.state) for u in report.usage] == [
            (1200, LIMIT, "over")
        ]


async def test_approving_raises_the_limit_and_releases_the_parked_recv(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=1200)
        await queue(h, "one", "two")
        parked = asyncio.create_task(h.s.broker.recv("alice", 1, 60, 100))
        await asyncio.sleep(0)  # it runs up to its wait for the hold to lift
        assert not parked.done()
        (approval,) = await budget_approvals(h)
        done = await approval_flow.approve(h.s, approval.id, OPERATOR)
        assert done == (
            f"approved {approval.id}: raised alice's budget by 450 tokens in 5h until the "
            "window rolls"
        )
        async with asyncio.timeout(5):  # woken at once, not after its 60 s
            got = await parked
        assert [m.body for m in got] == ["one", "two"]
        assert (await h.s.approvals.get(approval.id)).status == "approved"
        report = await h.s.usage.report("alice", "5h", False)
        # What was spent past the limit, then 25 % of it: 250 more tokens from now on.
        assert [(u.limit_tokens, u.state) for u in report.usage] == [(1450, "warning")]
        assert await h.s.usage.items() == [
            i for i in await h.s.usage.items() if i.kind == "budget_warning"
        ]
        with pytest.raises(Conflict, match="already approved"):
            await approval_flow.approve(h.s, approval.id, OPERATOR)
        await h.turn("alice", output_tokens=250)  # the grant spent: a new crossing
        assert await h.s.usage.budgets.held("alice")
        assert [a.status for a in await budget_approvals(h)] == ["approved", "pending"]
        clock.advance(WINDOW_5H + 1)  # the grant rolls out with the spend
        await h.s.usage.tick()
        assert not await h.s.usage.budgets.held("alice")
        assert (await h.s.usage.report("alice", "5h", False)).usage[0].limit_tokens == LIMIT


async def test_two_approves_at_once_grant_once(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=LIMIT)
        (approval,) = await budget_approvals(h)
        outcomes = await asyncio.gather(
            approval_flow.approve(h.s, approval.id, OPERATOR),
            approval_flow.approve(h.s, approval.id, OPERATOR),
            return_exceptions=True,
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "str"]
        grants = await h.s.db.read(
            lambda c: c.execute("SELECT extra_tokens FROM budget_grants").fetchall()
        )
        assert [g[0] for g in grants] == [250]


async def test_an_approval_reopened_after_a_crash_grants_nothing_more(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=LIMIT)
        (approval,) = await budget_approvals(h)
        claimed = await h.s.approvals.claim(approval.id)
        assert claimed.reason == approval.reason  # the description stays while claimed
        await h.s.usage.grant(claimed)  # then the daemon dies before recording the ending
        reopened = await h.s.approvals.reopen(approval.id)  # what the next start does
        assert (reopened.status, reopened.reason) == ("pending", approval.reason)
        h.s.usage = Usage(h.s)
        done = await approval_flow.approve(h.s, approval.id, OPERATOR)
        assert done.endswith("alice is under its budget again; nothing to grant")
        grants = await h.s.db.read(
            lambda c: c.execute("SELECT count(*) FROM budget_grants").fetchone()
        )
        assert grants[0] == 1
        assert not await h.s.usage.budgets.held("alice")


async def test_denying_keeps_it_held_until_the_window_rolls(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=LIMIT)
        await queue(h, "waiting")
        (approval,) = await budget_approvals(h)
        done = await approval_flow.deny(h.s, approval.id, "enough for today", OPERATOR)
        assert done == f"denied {approval.id}: alice stays held until the window rolls"
        await told(h)
        clock.advance(HOUR)
        await h.turn("alice", output_tokens=10)  # a turn that was under way still counts
        await h.s.usage.tick()
        assert await delivered(h) == []
        assert [a.status for a in await budget_approvals(h)] == ["denied"]  # none asked again
        assert await told(h) == []
        (item,) = await h.s.usage.items()
        assert (item.kind, item.ref) == ("over_budget", None)
        assert item.action == "hive-core usage alice (held until the 5h window rolls)"

        clock.advance(WINDOW_5H - HOUR + 1)  # the first turn leaves the window
        await h.s.usage.tick()
        assert await delivered(h) == ["waiting"]
        assert (await h.s.approvals.get(approval.id)).reason == "enough for today"


async def test_the_hold_lifts_as_the_window_rolls_and_the_approval_is_withdrawn(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=LIMIT)
        await queue(h, "later")
        clock.advance(WINDOW_5H)
        await h.s.usage.tick()
        assert await delivered(h) == []  # [now - 5h, now] still holds the turn
        clock.advance(1)
        await h.s.usage.tick()
        assert await delivered(h) == ["later"]
        (approval,) = await budget_approvals(h)
        assert approval.status == "denied"
        assert approval.reason == (
            "no longer needed: alice is back under its budget (the window rolled)"
        )
        with pytest.raises(Conflict):
            await approval_flow.approve(h.s, approval.id, OPERATOR)
        assert await h.s.usage.items() == []


async def test_one_approval_per_crossing(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    async with limited(db, clock, tmp_path, budget_tokens_7d=10 * LIMIT) as h:
        await h.turn("alice", input_tokens=LIMIT)
        for _ in range(3):  # turns that were under way, and ticks
            await h.turn("alice", output_tokens=100)
            await h.s.usage.tick()
        assert len(await budget_approvals(h)) == 1
        assert [e.hard for e in await told(h)] == [True]
        (approval,) = await budget_approvals(h)
        await approval_flow.approve(h.s, approval.id, OPERATOR)
        await h.turn("alice", input_tokens=8000)  # past the raised 5h limit and 80 % of 7d
        assert [a.status for a in await budget_approvals(h)] == ["approved", "pending"]
        news = await told(h)
        assert sorted((e.window, e.hard) for e in news) == [("5h", True), ("7d", False)]
        keys = sorted(i.key for i in await h.s.usage.items())
        assert keys == ["budget_warning:alice:7d", "over_budget:alice:5h"]


async def test_dollars_and_agent_toml_limits(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path, budget_usd_7d=2.0) as h:
        applied = h.s.settings.agents_dir / "bob" / "applied"
        applied.mkdir(parents=True)
        (applied / "agent.toml").write_text("[budget]\ntokens_5h = 100\nusd_7d = 1.0\n")
        await h.turn("alice", input_tokens=100, cost_usd=1.0)  # bob's limits are not alice's
        assert not await h.s.usage.budgets.held("alice")
        await h.turn("bob", input_tokens=10, cost_usd=1.0)
        assert await h.s.usage.budgets.held("bob")
        (approval,) = await budget_approvals(h)
        assert approval.reason == (
            "bob reached $1.00 in 7d (limit $1.00); approve to allow another $0.25 in 7d until "
            "the window rolls"
        )
        got = {u.window: u for u in (await h.s.usage.report("bob", None, False)).usage}
        assert (got["5h"].limit_tokens, got["7d"].limit_usd) == (100, 1.0)
        assert (got["5h"].state, got["7d"].state) == ("ok", "over")
        await approval_flow.approve(h.s, approval.id, OPERATOR)
        got = {u.window: u for u in (await h.s.usage.report("bob", None, False)).usage}
        assert got["7d"].limit_usd == pytest.approx(1.25)
        assert not await h.s.usage.budgets.held("bob")


async def test_a_restart_keeps_the_hold_and_tells_nobody_again(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with limited(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=LIMIT)
        await h.turn("bob", input_tokens=800)
        await queue(h, "kept")
        assert len(await told(h)) == 2
        h.s.usage = Usage(h.s)  # what a new daemon knows: only the tables
        assert await delivered(h) == []
        assert len(await budget_approvals(h)) == 1
        assert await told(h) == []
        assert sorted(i.key for i in await h.s.usage.items()) == [
            "budget_warning:bob:5h", "over_budget:alice:5h",
        ]  # fmt: skip
        (approval,) = await budget_approvals(h)
        await approval_flow.approve(h.s, approval.id, OPERATOR)
        assert await delivered(h) == ["kept"]


async def test_a_restart_without_an_approval_on_record_asks(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=LIMIT)  # no limit yet: nothing happens
        assert await budget_approvals(h) == []
        h.s.settings = h.s.settings.model_copy(update={"budget_tokens_5h": LIMIT})
        h.s.usage = Usage(h.s)  # a restart with a limit set
        assert await h.s.usage.budgets.held("alice")
        assert len(await budget_approvals(h)) == 1
        assert [e.hard for e in await told(h)] == [True]


async def test_a_lowered_limit_holds_at_the_next_tick_and_a_destroyed_agent_is_let_go(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.turn("alice", input_tokens=500)
        await h.s.usage.tick()
        h.s.settings = h.s.settings.model_copy(update={"budget_tokens_7d": 400})
        await h.s.usage.tick()
        assert await h.s.usage.budgets.held("alice")
        (approval,) = await budget_approvals(h)
        await h.s.registry.remove("alice")
        await h.s.usage.tick()
        assert not await h.s.usage.budgets.held("alice")
        gone = await h.s.approvals.get(approval.id)
        assert (gone.status, gone.reason) == ("denied", "no longer needed: alice was destroyed")
        assert WINDOW_7D > WINDOW_5H
