"""The dashboard's snapshot kept by the bus's events: after every kind of change it is what a
snapshot built afresh from the stores says; a subscription that overflowed builds anew;
pinging the harnesses happens off the request path and publishes what it contradicts."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from hive_core import agent_info
from hive_core.attention import Attention
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.containers.backend import ContainerStatus
from hive_core.dashboard import snapshot as snapshot_module
from hive_core.dashboard.snapshot import Snapshot
from hive_core.db import Database
from hive_core.errors import StorageError
from hive_core.registry import Registry
from hive_core.services import Services
from hive_share import events
from hive_share import requests as rq
from hive_share.models import AgentInfo
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import FakeClock, drain, services
from tests.hive_core.test_crash_watch import FakeBackend

BOUND = 10.0


@dataclass
class Hive:
    s: Services
    backend: FakeBackend
    snapshot: Snapshot

    async def kept(self) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(await self.snapshot.body())
        return got

    async def fresh(self) -> dict[str, Any]:
        """What a snapshot built now from the stores says."""
        other = Snapshot(self.s)
        try:
            got: dict[str, Any] = json.loads(await other.body())
            return got
        finally:
            other.close()

    async def same(self) -> dict[str, Any]:
        """The kept snapshot, checked against a fresh one (the attention list refreshed as
        its task does after each burst of events)."""
        assert self.s.attention is not None
        await self.s.attention.refresh()
        kept = await self.kept()
        assert kept == await self.fresh()
        return kept

    def run(self, name: str) -> None:
        pid = 2000 + len(self.backend.statuses)
        self.backend.statuses[name] = ContainerStatus(running=True, pid=pid)
        self.s.liveness.report_alive(name, pid)
        agent_info.publish_state(self.s, name)


@asynccontextmanager
async def hive(db: Database, clock: FakeClock, root: Path) -> AsyncIterator[Hive]:
    bus = EventBus()
    registry = Registry(db, clock)
    await registry.load()
    await registry.add(MANAGER_NAME, "manager")
    for name in ("alice", "bob"):
        await registry.add(name, "agent")
    broker = Broker(db, bus, clock, registry.is_recipient)
    backend = FakeBackend()
    s = services(db, bus, clock, registry, broker, backend, root / "s", root / "r")
    backend.services = s
    s.settings.agents_dir.mkdir(parents=True)
    for name in (MANAGER_NAME, "alice", "bob"):
        (s.settings.agents_dir / name).mkdir()
    s.attention = Attention(s, dict, lambda name: False)
    snap = Snapshot(s)
    try:
        yield Hive(s, backend, snap)
    finally:
        snap.close()
        broker.close()


async def test_the_kept_snapshot_is_the_fresh_one_after_every_kind_of_change(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        s = h.s
        first = await h.same()
        assert [a["name"] for a in first["agents"]] == [MANAGER_NAME, "alice", "bob"]
        assert first["seq"] == s.bus.seq

        h.run("alice")
        s.liveness.status["alice"] = "reading the build log"
        s.liveness.turn_state["alice"] = "thinking"
        agent_info.publish_state(s, "alice")
        kept = await h.same()
        (alice,) = [a for a in kept["agents"] if a["name"] == "alice"]
        assert (alice["alive"], alice["status"], alice["turn_state"]) == (
            True, "reading the build log", "thinking",
        )  # fmt: skip

        # The flow: 130 messages keep the newest 100; lease, release, lease again, deliver.
        ids = [(await s.broker.send(OPERATOR, "alice", f"m{i}", None))[0] for i in range(130)]
        kept = await h.same()
        assert [m["id"] for m in kept["messages"]] == ids[30:] and kept["more_messages"]
        # (The oldest 30 are out of the window: 33 reach its first 3.)
        await s.broker.recv("alice", owner=1, wait_seconds=0, limit=33)
        assert {m["state"] for m in (await h.same())["messages"][:3]} == {"leased"}
        s.broker.release(1)
        assert {m["state"] for m in (await h.same())["messages"][:3]} == {"queued"}
        got = await s.broker.recv("alice", owner=2, wait_seconds=0, limit=33)
        await s.broker.ack("alice", 2, [m.id for m in got])
        kept = await h.same()
        assert [m["state"] for m in kept["messages"][:4]] == ["delivered"] * 3 + ["queued"]

        # Bodies past the reply's budget: fewer than 100, the oldest left to a page.
        for _ in range(4):
            await s.broker.send(OPERATOR, "bob", "x" * rq.MAX_BODY, None)
        assert len((await h.same())["messages"]) == 3

        # The operator's inbox, read.
        await s.broker.send("alice", OPERATOR, "done with the build", None)
        assert (await h.same())["inbox"][-1]["body"] == "done with the build"
        await s.broker.operator_inbox(limit=10, wait_seconds=0)
        assert (await h.same())["inbox"][-1]["delivered_at"] is not None

        # Approvals and questions, from asked to ended.
        approval = await s.approvals.add("spawn", "carol", MANAGER_NAME)
        assert [a["id"] for a in (await h.same())["approvals"]] == [approval.id]
        await s.approvals.claim(approval.id)
        assert (await h.same())["approvals"][0]["status"] == "in_progress"
        await s.approvals.resolve(approval.id, "denied", "not now", was=("in_progress",))
        assert (await h.same())["approvals"] == []
        question = await s.questions.ask("alice", None, "ship it?", ["yes", "no"], None)
        assert [q["id"] for q in (await h.same())["questions"]] == [question.id]
        await s.questions.answer(question.id, "yes", OPERATOR)
        assert (await h.same())["questions"] == []

        # The attention list and usage, from their events.
        await s.approvals.add("spawn", "dave", MANAGER_NAME)
        assert [i["kind"] for i in (await h.same())["attention"]] == ["approval"]
        await s.usage.record("alice", _turn("t1"))
        await s.usage.record("bob", _turn("t2"))
        usage = (await h.same())["usage"]
        assert {(u["agent"], u["turns"]) for u in usage["usage"] if u["window"] == "5h"} == {
            (MANAGER_NAME, 0), ("alice", 1), ("bob", 1), ("*", 2),
        }  # fmt: skip

        # A stop, a tombstone, a purge.
        await h.backend.stop("alice")
        assert [a["state"] for a in (await h.same())["agents"] if a["name"] == "alice"] == [
            "stopped"
        ]
        await s.registry.remove("bob")
        tomb = AgentInfo(name="bob", role="agent", state="tombstone")
        s.bus.publish(events.ContainerStateChanged(agent=tomb))
        assert [a["name"] for a in (await h.same())["agents"]][-1] == "bob"
        shutil.rmtree(s.settings.agents_dir / "bob")
        s.bus.publish(events.ContainerRemoved(name="bob"))
        assert "bob" not in {a["name"] for a in (await h.same())["agents"]}


def _turn(turn_id: str) -> rq.ReportTurnUsage:
    return rq.ReportTurnUsage(
        cmd="turn_usage", turn_id=turn_id, started_at=1.0, ended_at=1e12, model="opus",
        result_kind="success", input_tokens=100, output_tokens=20,
    )  # fmt: skip


async def test_each_fetch_reflects_every_event_before_it_and_reads_no_database(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.kept()
        h.run("alice")
        reads: list[object] = []
        real_read = h.s.db.read

        async def counted(fn: Any) -> Any:
            reads.append(fn)
            return await real_read(fn)

        for i in range(20):
            await h.s.broker.send(OPERATOR, "alice", f"m{i}", None)
            h.s.liveness.status["alice"] = f"step {i}"
            agent_info.publish_state(h.s, "alice")
            h.s.db.read = counted  # type: ignore[method-assign]
            try:
                kept = await h.kept()
            finally:
                h.s.db.read = real_read  # type: ignore[method-assign]
            assert kept["seq"] == h.s.bus.seq
            assert kept["messages"][-1]["body"] == f"m{i}"
            assert [a["status"] for a in kept["agents"] if a["name"] == "alice"] == [f"step {i}"]
        assert reads == []
        await h.s.broker.send("alice", OPERATOR, "to you", None)  # the inbox is read again
        h.s.db.read = counted  # type: ignore[method-assign]
        try:
            assert (await h.kept())["inbox"][-1]["body"] == "to you"
        finally:
            h.s.db.read = real_read  # type: ignore[method-assign]
        assert len(reads) == 1


async def test_a_subscription_that_overflowed_builds_anew(
    db: Database, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_module, "QUEUE", 4)
    async with hive(db, clock, tmp_path) as h:
        await h.kept()
        for i in range(10):
            await h.s.broker.send(OPERATOR, "alice", f"m{i}", None)
        kept = await h.same()
        assert [m["body"] for m in kept["messages"]][-10:] == [f"m{i}" for i in range(10)]


async def test_follow_applies_events_as_they_come(
    db: Database, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_module, "QUEUE", 4)
    async with hive(db, clock, tmp_path) as h, anyio.create_task_group() as tg:
        tg.start_soon(h.snapshot.follow)
        await h.kept()
        for i in range(10):  # more than the queue holds, each one applied as it comes
            await h.s.broker.send(OPERATOR, "alice", f"m{i}", None)
            with anyio.fail_after(BOUND):
                await anyio.wait_all_tasks_blocked()
        # Applied without a fetch, and never cut (which would mean a build anew).
        assert [i.fields["body"] for i in h.snapshot._flow.items] == [f"m{i}" for i in range(10)]
        assert h.snapshot._built
        await h.same()
        tg.cancel_scope.cancel()


async def test_probing_publishes_a_harness_that_runs_but_does_not_answer(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with hive(db, clock, tmp_path) as h:
        h.run("alice")  # reported itself alive; nothing listens on its harness socket
        assert [a["alive"] for a in (await h.kept())["agents"] if a["name"] == "alice"] == [True]
        watch = h.s.bus.subscribe()
        await h.snapshot.ping_all()
        (frame,) = await drain(watch)
        assert isinstance(frame.event, events.ContainerStateChanged)
        assert (frame.event.agent.name, frame.event.agent.alive) == ("alice", False)
        assert [a["alive"] for a in (await h.kept())["agents"] if a["name"] == "alice"] == [False]
        await h.snapshot.ping_all()  # nothing new to say
        assert await drain(watch) == []


async def test_a_read_that_failed_is_read_again_by_the_next_fetch(
    db: Database, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hive(db, clock, tmp_path) as h:
        await h.kept()
        approval = await h.s.approvals.add("spawn", "carol", MANAGER_NAME)
        real = h.s.approvals.pending

        async def broken() -> Any:
            raise StorageError("the disk is gone")

        monkeypatch.setattr(h.s.approvals, "pending", broken)
        with pytest.raises(StorageError):
            await h.kept()
        monkeypatch.setattr(h.s.approvals, "pending", real)
        assert [a["id"] for a in (await h.same())["approvals"]] == [approval.id]
