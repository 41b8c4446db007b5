"""Listing questions over a real database and broker, with a clock that moves only on demand:
the operator's pending ones, an agent's open ones, open threads over the wired services, rows
that do not decode, and questions surviving a reopened database."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from hive_core import open_threads
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.containers.backend import AgentSpec, ContainerStatus
from hive_core.containers.logfile import Tail
from hive_core.db import Database
from hive_core.questions import Questions
from hive_core.registry import Registry
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock, services
from tests.hive_core.test_questions import broker, questions, recipients

__all__ = ["broker", "questions", "recipients"]  # the fixtures, from the questions' tests


# --- listings -----------------------------------------------------------------------


async def test_pending_for_the_operator_lists_only_operator_questions(
    questions: Questions,
) -> None:
    to_op = await questions.ask("alice", None, "a?", None, None)
    to_bob = await questions.ask("alice", "bob", "b?", None, None)
    done = await questions.ask("bob", None, "c?", None, None)
    await questions.answer(done.id, "done", OPERATOR)
    from_bob = await questions.ask("bob", None, "d?", None, None)

    assert [q.id for q in await questions.pending(operator_only=True)] == [to_op.id, from_bob.id]
    assert [q.id for q in await questions.pending()] == [to_op.id, to_bob.id, from_bob.id]


async def test_open_for_covers_asked_by_and_waiting_for(questions: Questions) -> None:
    asked = await questions.ask("alice", None, "mine?", None, None)
    owed = await questions.ask("bob", "alice", "yours?", None, None)
    other = await questions.ask(MANAGER_NAME, "bob", "theirs?", None, None)
    closed = await questions.ask("alice", "bob", "closed?", None, None)
    await questions.answer(closed.id, "yes", "bob")

    assert [q.id for q in await questions.open_for("alice")] == [asked.id, owed.id]
    assert [q.id for q in await questions.open_for("bob")] == [owed.id, other.id]
    assert [q.id for q in await questions.open_for(MANAGER_NAME)] == [other.id]
    assert await questions.open_for("carol") == []


def _insert_raw(
    status: str, options: str | None, expires_at: str | None
) -> Callable[[sqlite3.Connection], int]:
    """A questions row written past the model, as a bad migration or hand edit might."""

    def insert(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "INSERT INTO questions (asker, target, question, options, created_at, expires_at, "
            "status) VALUES ('alice', NULL, 'raw?', ?, ?, ?, ?) RETURNING id",
            (options, T0, expires_at, status),
        ).fetchone()
        return int(row[0])

    return insert


@pytest.mark.parametrize(
    ("options", "expires_at"),
    [("not json", None), ('"just a string"', None), ('{"a": 1}', None), (None, "soon")],
)
async def test_a_pending_row_that_does_not_decode_fails_the_listing(
    questions: Questions, db: Database, options: str | None, expires_at: str | None
) -> None:
    good = await questions.ask("alice", None, "fine?", None, None)
    bad_id = await db.write(_insert_raw("pending", options, expires_at))
    after = await questions.ask("alice", None, "also fine?", None, None)
    assert bad_id not in (good.id, after.id)

    with pytest.raises(ValueError, match=rf"questions row id={bad_id}\b"):
        await questions.pending()
    with pytest.raises(ValueError, match=rf"questions row id={bad_id}\b"):
        await questions.pending(operator_only=True)
    with pytest.raises(ValueError, match=rf"questions row id={bad_id}\b"):
        await questions.open_for("alice")
    with pytest.raises(ValueError, match=rf"questions row id={bad_id}\b"):
        await questions.get(bad_id)


async def test_a_row_with_an_unknown_status_does_not_decode(
    questions: Questions, db: Database
) -> None:
    bad_id = await db.write(_insert_raw("bogus", None, None))
    with pytest.raises(ValueError, match=rf"questions row id={bad_id}\b"):
        await questions.get(bad_id)
    with pytest.raises(ValueError, match=rf"questions row id={bad_id}\b"):
        await questions.answer(bad_id, "x", OPERATOR)


# --- durability ---------------------------------------------------------------------


async def test_questions_survive_reopening_the_database(
    db: Database, db_path: Path, bus: EventBus, clock: FakeClock, recipients: set[str]
) -> None:
    broker = Broker(db, bus, clock, lambda name: name in recipients)
    questions = Questions(db, bus, clock, broker, "here")
    pending = await questions.ask("alice", "bob", "still there?", ["yes", "no"], 60.0)
    answered = await questions.ask("bob", None, "ok?", None, None)
    answered = await questions.answer(answered.id, "fine", OPERATOR)
    broker.close()
    await db.close()

    reopened = await Database.open(db_path)
    try:
        broker2 = Broker(reopened, bus, clock, lambda name: name in recipients)
        questions2 = Questions(reopened, bus, clock, broker2, "here")
        assert await questions2.get(pending.id) == pending
        assert await questions2.get(answered.id) == answered
        assert await questions2.pending() == [pending]
        # The watchdog of the new process still expires it, once.
        assert await questions2.expire_due(T0 + 60) == [pending.id]
        assert await questions2.expire_due(T0 + 60) == []
        broker2.close()
    finally:
        await reopened.close()


# --- open threads over the wired services ---------------------------------------------


class _NoBackend:
    """The open-thread queries never touch containers."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raise AssertionError("no backend in these tests")

    async def start(self, spec: AgentSpec) -> ContainerStatus:
        raise AssertionError("no backend in these tests")

    async def stop(self, name: str) -> None:
        raise AssertionError("no backend in these tests")

    async def kill(self, name: str) -> None:
        raise AssertionError("no backend in these tests")

    def status(self, name: str) -> ContainerStatus:
        return ContainerStatus(running=False)

    async def shutdown(self) -> None:
        raise AssertionError("no backend in these tests")

    async def destroy(self, name: str) -> None:
        raise AssertionError("no backend in these tests")

    async def build(self, spec: AgentSpec, commit: str) -> None:
        raise AssertionError("no backend in these tests")

    async def finalize(self, spec: AgentSpec) -> None:
        raise AssertionError("no backend in these tests")

    async def log_tail(self, spec: AgentSpec, lines: int) -> Tail:
        raise AssertionError("no backend in these tests")

    async def log_read(self, spec: AgentSpec, offset: int) -> tuple[bytes, int]:
        raise AssertionError("no backend in these tests")


async def test_open_threads_per_agent_and_hive_wide(
    db: Database, bus: EventBus, clock: FakeClock, broker: Broker, tmp_path: Path
) -> None:
    with tempfile.TemporaryDirectory(prefix="hh-") as run_dir:
        registry = Registry(db, clock)
        s = services(db, bus, clock, registry, broker, _NoBackend(), tmp_path / "s", Path(run_dir))
        mine = await s.questions.ask("alice", None, "mine?", None, None)
        owed = await s.questions.ask("bob", "alice", "owed?", None, None)
        other = await s.questions.ask(MANAGER_NAME, None, "other?", None, None)
        await s.reminders.add("alice", "r1", None, 60, None)
        await s.reminders.add("alice", "r2", None, 120, None)
        await s.reminders.add("bob", "r3", None, 60, None)

        alice = await open_threads.for_agent(s, "alice")
        assert [q.id for q in alice.questions] == [mine.id, owed.id]
        assert (alice.approvals, alice.pending_reminders) == ([], 2)

        everyone = await open_threads.hive_wide(s)
        assert [q.id for q in everyone.questions] == [mine.id, owed.id, other.id]
        assert everyone.pending_reminders == 3
