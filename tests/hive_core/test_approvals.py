from __future__ import annotations

import sqlite3

import pytest

from hive_core.approvals import Approvals
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import Conflict, NotFound
from hive_share import events
from tests.hive_core.conftest import FakeClock, drain


@pytest.fixture
def approvals(db: Database, bus: EventBus, clock: FakeClock) -> Approvals:
    return Approvals(db, bus, clock)


async def test_an_added_approval_is_pending_and_announced(
    approvals: Approvals, bus: EventBus, clock: FakeClock
) -> None:
    sub = bus.subscribe()
    added = await approvals.add("spawn", "alice", "hm1nd")

    assert (added.kind, added.agent, added.requester, added.status) == (
        "spawn",
        "alice",
        "hm1nd",
        "pending",
    )
    assert added.created_at == clock.now()
    assert added.resolved_at is None
    assert await approvals.pending() == [added]
    assert await approvals.get(added.id) == added
    assert [f.event for f in await drain(sub)] == [events.ApprovalAdded(approval=added)]


async def test_pending_lists_approvals_in_the_order_they_were_added(approvals: Approvals) -> None:
    first = await approvals.add("spawn", "alice", "hm1nd")
    second = await approvals.add("spawn", "bob", "hm1nd")
    assert [a.id for a in await approvals.pending()] == [first.id, second.id]


async def test_resolving_an_approval_records_it_and_removes_it_from_pending(
    approvals: Approvals, bus: EventBus, clock: FakeClock
) -> None:
    added = await approvals.add("spawn", "alice", "hm1nd")
    clock.advance(60)
    sub = bus.subscribe()

    resolved = await approvals.resolve(added.id, "denied", "not now")

    assert (resolved.id, resolved.status, resolved.reason) == (added.id, "denied", "not now")
    assert resolved.resolved_at == clock.now()
    assert await approvals.pending() == []
    assert await approvals.get(added.id) == resolved
    assert [f.event for f in await drain(sub)] == [events.ApprovalResolved(approval=resolved)]


async def test_a_second_pending_spawn_of_the_same_agent_is_a_conflict(
    approvals: Approvals,
) -> None:
    first = await approvals.add("spawn", "alice", "hm1nd")
    with pytest.raises(Conflict, match=f"approval {first.id}"):
        await approvals.add("spawn", "alice", "operator")
    assert [a.id for a in await approvals.pending()] == [first.id]


async def test_a_spawn_may_be_requested_again_once_the_first_is_resolved(
    approvals: Approvals,
) -> None:
    first = await approvals.add("spawn", "alice", "hm1nd")
    await approvals.resolve(first.id, "denied", None)
    second = await approvals.add("spawn", "alice", "hm1nd")
    assert second.id != first.id
    assert await approvals.pending() == [second]


async def test_resolving_twice_is_a_conflict_and_keeps_the_first_outcome(
    approvals: Approvals,
) -> None:
    added = await approvals.add("spawn", "alice", "hm1nd")
    first = await approvals.resolve(added.id, "approved", None)
    with pytest.raises(Conflict, match="already approved"):
        await approvals.resolve(added.id, "denied", "changed my mind")
    assert await approvals.get(added.id) == first


async def test_an_unknown_approval_id_is_not_found(approvals: Approvals) -> None:
    with pytest.raises(NotFound, match="999"):
        await approvals.resolve(999, "approved", None)
    with pytest.raises(NotFound, match="999"):
        await approvals.get(999)


async def test_a_corrupt_approval_row_raises_naming_its_table_and_id(
    approvals: Approvals, db: Database
) -> None:
    good = await approvals.add("spawn", "alice", "hm1nd")

    def insert_bogus(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "INSERT INTO approvals (kind, agent, requester, created_at) "
            "VALUES ('bogus', 'bob', 'hm1nd', 1.0) RETURNING id"
        ).fetchone()
        return int(row[0])

    bad_id = await db.write(insert_bogus)
    assert bad_id != good.id

    with pytest.raises(ValueError, match=rf"approvals row id={bad_id}\b"):
        await approvals.pending()
    with pytest.raises(ValueError, match=rf"approvals row id={bad_id}\b"):
        await approvals.get(bad_id)
