"""The attention list: each item comes with its cause and leaves with it, ranked by
severity then age, and published whole only when it changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hive_core.attention import Attention, CrashState, bears_on_the_list, for_manager
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.registry import Registry
from hive_core.services import Services
from hive_share.events import AttentionChanged, ContainerRemoved, Delivered, Leased, Sent
from hive_share.models import Message
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock, drain, services
from tests.hive_core.test_crash_watch import FakeBackend


@dataclass
class Hive:
    s: Services
    attention: Attention
    crashes: dict[str, CrashState] = field(default_factory=dict)
    outdated: set[str] = field(default_factory=set)

    async def kinds(self) -> list[tuple[str, str | None, str]]:
        return [(i.kind, i.agent, i.severity) for i in await self.attention.compute()]


@asynccontextmanager
async def hive(db: Database, clock: FakeClock, root: Path) -> AsyncIterator[Hive]:
    bus = EventBus()
    registry = Registry(db, clock)
    await registry.load()
    await registry.add(MANAGER_NAME, "manager")
    for name in ("alice", "bob"):
        await registry.add(name, "agent")
    broker = Broker(db, bus, clock, registry.is_recipient)
    s = services(db, bus, clock, registry, broker, FakeBackend(), root / "s", root / "r")
    crashes: dict[str, CrashState] = {}
    outdated: set[str] = set()
    attention = Attention(s, lambda: dict(crashes), outdated.__contains__)
    try:
        yield Hive(s, attention, crashes, outdated)
    finally:
        broker.close()


async def test_a_quiet_hive_needs_nothing(db: Database, clock: FakeClock, tmp_path: Path) -> None:
    async with hive(db, clock, tmp_path) as h:
        assert await h.attention.compute() == []


async def test_approvals_and_questions_stay_until_resolved(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        spawn = await h.s.approvals.add("spawn", "carol", MANAGER_NAME)
        clock.advance(5)
        question = await h.s.questions.ask("alice", None, "ship it?\nmore", ["yes", "no"], None)
        clock.advance(3600)  # time alone removes nothing
        items = await h.attention.compute()
        assert [(i.key, i.kind, i.ref, i.since) for i in items] == [
            (f"approval:{spawn.id}", "approval", spawn.id, T0),
            (f"question:{question.id}", "question", question.id, T0 + 5),
        ]
        assert items[1].summary == "alice asks: ship it?"
        assert items[1].action == f"hive-core answer {question.id} ANSWER"
        await h.s.approvals.claim(spawn.id)  # under way: still there, calmer, ranked lower
        assert [(i.kind, i.severity) for i in await h.attention.compute()] == [
            ("question", "warn"), ("approval", "info"),
        ]  # fmt: skip
        await h.s.approvals.resolve(spawn.id, "approved", None, was=("in_progress",))
        await h.s.questions.answer(question.id, "yes", OPERATOR)
        assert await h.attention.compute() == []


async def test_unread_operator_messages_are_one_item_until_read(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.s.broker.send("alice", OPERATOR, "done", None)
        clock.advance(1)
        await h.s.broker.send("bob", OPERATOR, "also done", None)
        (item,) = await h.attention.compute()
        assert (item.kind, item.summary, item.since) == (
            "operator_message", "2 unread messages to the operator", T0,
        )  # fmt: skip
        assert for_manager([item]) == []  # the manager never sees the operator's inbox
        await h.s.broker.operator_inbox(10, 0)
        assert await h.attention.compute() == []


async def test_login_problems_are_urgent_when_messages_wait(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.s.liveness.login.update(alice="needs_login", bob="claude_missing", hm1nd="logged_in")
        assert await h.kinds() == [
            ("claude_missing", "bob", "urgent"),
            ("needs_login", "alice", "warn"),
        ]
        await h.s.broker.send(OPERATOR, "alice", "hello", None)
        alice = next(i for i in await h.attention.compute() if i.agent == "alice")
        assert alice.severity == "urgent" and "1 message wait" in alice.summary
        assert alice.action.startswith("hive-core login alice")
        first = alice.since
        clock.advance(60)
        again = next(i for i in await h.attention.compute() if i.agent == "alice")
        assert again.since == first  # first seen, kept while it lasts
        h.s.liveness.login.update(alice="logged_in", bob="logged_in")
        assert await h.attention.compute() == []


async def test_crashes_failed_deploys_and_outdated_harnesses(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.crashes["alice"] = CrashState(T0 - 10, "the harness exited with code 1", gave_up=True)
        h.crashes["bob"] = CrashState(T0 - 5, "it vanished", gave_up=False)
        h.outdated.add("bob")
        failed = await h.s.approvals.add("apply_commit", "bob", MANAGER_NAME, commit="a" * 40)
        await h.s.approvals.claim(failed.id)
        await h.s.approvals.resolve(failed.id, "failed", "verify: bad model", was=("in_progress",))
        assert await h.kinds() == [
            ("given_up", "alice", "urgent"),
            ("crashed", "bob", "warn"),
            ("deploy_failed", "bob", "warn"),
            ("needs_update", "bob", "info"),
        ]
        deploy = next(i for i in await h.attention.compute() if i.kind == "deploy_failed")
        assert deploy.summary == f"deploy {failed.id} to bob failed: verify: bad model"
        # A later deploy that went through clears the failed one.
        fixed = await h.s.approvals.add("apply_commit", "bob", MANAGER_NAME, commit="b" * 40)
        await h.s.approvals.claim(fixed.id)
        await h.s.approvals.resolve(fixed.id, "approved", None, was=("in_progress",))
        h.crashes.clear()
        h.outdated.clear()
        assert await h.attention.compute() == []


async def test_the_list_is_published_whole_and_only_when_it_changed(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        sub = h.s.bus.subscribe()
        assert await h.attention.refresh() is False  # empty, as it was
        approval = await h.s.approvals.add("spawn", "carol", MANAGER_NAME)
        assert await h.attention.refresh() is True
        assert await h.attention.refresh() is False
        published = [f.event for f in await drain(sub) if f.event.kind == "attention_changed"]
        assert len(published) == 1 and isinstance(published[0], AttentionChanged)
        assert [i.ref for i in published[0].items] == [approval.id]
        assert h.attention.items == published[0].items


def test_only_the_operators_messages_bear_on_the_list() -> None:
    def sent(sender: str, recipient: str) -> Sent:
        message = Message(id=1, sender=sender, recipient=recipient, body="b", sent_at=T0)
        return Sent(message=message)

    assert bears_on_the_list(sent("a", OPERATOR))
    assert not bears_on_the_list(sent(OPERATOR, "a"))
    assert not bears_on_the_list(sent("a", "b"))
    assert bears_on_the_list(Delivered(recipient=OPERATOR, ids=[1], delivered_at=T0))
    assert not bears_on_the_list(Delivered(recipient="a", ids=[1], delivered_at=T0))
    assert not bears_on_the_list(Leased(recipient="a", ids=[1]))
    assert not bears_on_the_list(AttentionChanged(items=[]))
    assert bears_on_the_list(ContainerRemoved(name="a"))
