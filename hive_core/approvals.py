"""The approval queue: requests the operator approves or denies (spawns, for now)."""

from __future__ import annotations

import sqlite3
from typing import Any

from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import Conflict, NotFound
from hive_core.rows import decode
from hive_share import events
from hive_share.models import Approval, ApprovalKind, ApprovalStatus


def _columns(data: dict[str, Any]) -> dict[str, Any]:
    data["commit"] = data.pop("commit_sha")  # `commit` is an SQL keyword
    return data


def _approval(row: sqlite3.Row) -> Approval:
    return decode(Approval, "approvals", row, _columns)


class Approvals:
    def __init__(self, db: Database, bus: EventBus, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock

    async def add(
        self,
        kind: ApprovalKind,
        agent: str,
        requester: str,
        *,
        commit: str | None = None,
        diff: str | None = None,
    ) -> Approval:
        """Queue a pending approval.

        Raises:
            Conflict: the same kind is already pending for that agent.
        """
        now = self._clock.now()

        def insert(conn: sqlite3.Connection) -> sqlite3.Row:
            dup = conn.execute(
                "SELECT id FROM approvals WHERE status = 'pending' AND kind = ? AND agent = ?",
                (kind, agent),
            ).fetchone()
            if dup is not None:
                raise Conflict(f"a {kind} of {agent!r} is already pending as approval {dup[0]}")
            row: sqlite3.Row = conn.execute(
                "INSERT INTO approvals (kind, agent, requester, created_at, commit_sha, diff) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (kind, agent, requester, now, commit, diff),
            ).fetchone()
            return row

        approval = _approval(await self._db.write(insert))
        self._bus.publish(events.ApprovalAdded(approval=approval))
        return approval

    async def get(self, approval_id: int) -> Approval:
        """Raises: NotFound."""

        def select(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
            return row

        row = await self._db.read(select)
        if row is None:
            raise NotFound(f"no approval with id {approval_id}")
        return _approval(row)

    async def count_pending(self) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM approvals WHERE status = 'pending'"
            ).fetchone()
        )
        return int(row[0])

    async def pending(self) -> list[Approval]:
        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM approvals WHERE status = 'pending' ORDER BY id"
            ).fetchall()

        return [_approval(r) for r in await self._db.read(select)]

    async def resolve(
        self, approval_id: int, status: ApprovalStatus, reason: str | None
    ) -> Approval:
        """Move a pending approval to `status`.

        Raises:
            NotFound: no such approval.
            Conflict: it is no longer pending.
        """
        now = self._clock.now()

        def update(conn: sqlite3.Connection) -> sqlite3.Row:
            row: sqlite3.Row | None = conn.execute(
                "UPDATE approvals SET status = ?, resolved_at = ?, reason = ? "
                "WHERE id = ? AND status = 'pending' RETURNING *",
                (status, now, reason, approval_id),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT status FROM approvals WHERE id = ?", (approval_id,)
                ).fetchone()
                if current is None:
                    raise NotFound(f"no approval with id {approval_id}")
                raise Conflict(f"approval {approval_id} is already {current[0]}")
            return row

        approval = _approval(await self._db.write(update))
        self._bus.publish(events.ApprovalResolved(approval=approval))
        return approval
